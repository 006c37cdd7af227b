//! Test doubles for GCS media (feature `testing`, never in the binary's own build): a FAKE blob
//! signer and the `fake-gcs-server` emulator, started and stopped by the tests.
//!
//! `fintrail serve` never reaches this module: [`super::store::MediaConfig::from_env`] always
//! signs with [`super::gcs::IamCredentialsSigner`].

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::signature::{KeyPair as _, RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};

use super::gcs::{BlobSigner, Endpoint, GcsConfig};
use super::store::StoreError;

/// A FAKE `signBlob`: signs like IAM Credentials does (RSASSA-PKCS1-v1_5, SHA-256) but with a
/// key generated on this machine for the test, so a test can check what was signed. For tests
/// only: GCS would refuse its signatures, and production never constructs it.
pub struct FakeBlobSigner {
    email: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for FakeBlobSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBlobSigner").field("email", &self.email).finish()
    }
}

impl FakeBlobSigner {
    /// Signs as `email` with a fresh RSA-2048 key (`openssl genpkey`: ring signs and verifies
    /// RSA but does not generate RSA keys).
    pub fn generate(email: &str) -> FakeBlobSigner {
        let out = Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-outform", "DER"])
            .output()
            .expect("openssl runs (the tests need it: apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl genpkey failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        FakeBlobSigner::from_der(email, &out.stdout)
    }

    /// Signs as `email` with an RSA private key in DER: PKCS#8, or PKCS#1 (what OpenSSL 3's
    /// `genpkey -outform DER` writes).
    pub fn from_der(email: &str, der: &[u8]) -> FakeBlobSigner {
        let key =
            RsaKeyPair::from_pkcs8(der).or_else(|_| RsaKeyPair::from_der(der)).expect("an RSA private key in DER");
        FakeBlobSigner { email: email.to_owned(), key }
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, self.key.public_key().as_ref())
            .verify(message, signature)
            .is_ok()
    }
}

impl BlobSigner for FakeBlobSigner {
    fn email(&self) -> &str {
        &self.email
    }

    fn sign_blob(&self, blob: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), blob, &mut sig)
            .map_err(|_| StoreError::Backend("fake signer failed".into()))?;
        Ok(sig)
    }
}

/// Where `./dev setup` puts the emulator (`FAKE_GCS_SERVER_BIN` overrides).
pub fn fake_gcs_server_binary() -> PathBuf {
    std::env::var_os("FAKE_GCS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.deps/fake-gcs-server/fake-gcs-server"))
}

/// A `fake-gcs-server` on a free loopback port, in-memory, plain http; killed on drop.
pub struct FakeGcsServer {
    child: Child,
    endpoint: String,
    log: Arc<Mutex<String>>,
}

impl FakeGcsServer {
    /// Starts the emulator. Panics, saying to run `./dev setup`, when its binary is missing: a
    /// machine without it fails the GCS tests instead of skipping them.
    pub fn start() -> FakeGcsServer {
        let bin = fake_gcs_server_binary();
        assert!(
            bin.is_file(),
            "fake-gcs-server is not installed at {}: run `./dev setup` (it installs the pinned emulator)",
            bin.display()
        );
        let mut last = String::new();
        // A port found free can be taken before the emulator binds it: try a few.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let mut child = Command::new(&bin)
                .args(["-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-log-level", "warn"])
                .args(["-port", &port.to_string()])
                // Path-style XML requests (`/bucket/object`) are routed by this Host.
                .args(["-public-host", "127.0.0.1"])
                .args(["-external-url", &format!("http://127.0.0.1:{port}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let log = Arc::new(Mutex::new(String::new()));
            if let Some(mut stderr) = child.stderr.take() {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stderr.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                        l.push_str(&String::from_utf8_lossy(&buf[..n]));
                        if l.len() > 16_384 {
                            let cut = l.len() - 8_192;
                            let cut = (cut..l.len()).find(|i| l.is_char_boundary(*i)).unwrap_or(l.len());
                            l.drain(..cut);
                        }
                    }
                });
            }
            let mut server = FakeGcsServer { child, endpoint: format!("http://127.0.0.1:{port}"), log };
            match server.wait_ready(Duration::from_secs(15)) {
                Ok(()) => return server,
                Err(why) => last = why,
            }
        }
        panic!("fake-gcs-server did not start: {last}");
    }

    fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let agent = agent();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}: {}", self.log()));
            }
            if agent.get(&format!("{}/storage/v1/b", self.endpoint)).call().is_ok_and(|r| r.status() == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("not ready within {within:?}: {}", self.log()))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What the emulator wrote on stderr (its last lines).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Creates `bucket` (JSON API; the emulator takes no credentials).
    pub fn create_bucket(&self, bucket: &str) {
        let body = serde_json::json!({ "name": bucket }).to_string();
        let r = agent()
            .post(&format!("{}/storage/v1/b?project=fintrail-test", self.endpoint))
            .header("Content-Type", "application/json")
            .send(body)
            .expect("create bucket");
        assert_eq!(r.status(), 200, "create bucket {bucket}");
    }

    /// The GCS configuration for `bucket` on this emulator, signed by `signer`.
    pub fn config(&self, bucket: &str, signer: Arc<dyn BlobSigner>) -> GcsConfig {
        GcsConfig { bucket: bucket.to_owned(), endpoint: Endpoint::parse(&self.endpoint).expect("endpoint"), signer }
    }

    /// The bytes of `bucket/object` as the emulator holds them (JSON API, no signature), or
    /// `None` when there is no such object.
    pub fn object(&self, bucket: &str, object: &str) -> Option<Vec<u8>> {
        let url = format!(
            "{}/download/storage/v1/b/{bucket}/o/{}?alt=media",
            self.endpoint,
            super::gcs::uri_encode(object, false)
        );
        let mut r = agent().get(&url).call().expect("emulator answers");
        match r.status().as_u16() {
            200 => Some(r.body_mut().with_config().limit(64 << 20).read_to_vec().expect("body")),
            404 => None,
            s => panic!("emulator answered {s} for {bucket}/{object}"),
        }
    }

    /// Deletes `bucket/object` behind the API's back (JSON API); whether it existed.
    pub fn delete_object(&self, bucket: &str, object: &str) -> bool {
        let url = format!("{}/storage/v1/b/{bucket}/o/{}", self.endpoint, super::gcs::uri_encode(object, false));
        let r = agent().delete(&url).call().expect("emulator answers");
        (200..300).contains(&r.status().as_u16())
    }

    /// Object names in `bucket` (JSON API).
    pub fn list(&self, bucket: &str) -> Vec<String> {
        let mut r = agent().get(&format!("{}/storage/v1/b/{bucket}/o", self.endpoint)).call().expect("list");
        assert_eq!(r.status(), 200, "list {bucket}");
        let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json");
        v["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|o| o["name"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

impl Drop for FakeGcsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        // Not through a proxy from the environment: the emulator is on loopback.
        .proxy(None)
        .build()
        .into()
}
