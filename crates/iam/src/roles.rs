//! Role knowledge: predefined roles from a catalogue folder (`gcloud iam roles describe
//! --format=json` files), custom roles from the code, a small built-in subset for when no
//! catalogue is given, and the built-in list of dangerous permissions.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// A catalogue bigger than this is not a role catalogue (GCP has ~2,500 predefined roles).
pub const MAX_CATALOGUE_FILES: usize = 50_000;

#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub permissions: BTreeSet<String>,
    /// Defined in the analyzed code (custom role) rather than predefined.
    pub custom: bool,
}

#[derive(Debug, Default)]
pub struct RoleCatalog {
    roles: HashMap<String, Role>,
    /// Where predefined roles came from (shown in reports).
    pub origin: String,
}

impl RoleCatalog {
    /// Loads every `*.json` file of a folder. Malformed files are errors: a silently partial
    /// catalogue would hide findings.
    pub fn load_dir(dir: &Path) -> anyhow::Result<RoleCatalog> {
        #[derive(serde::Deserialize)]
        struct RoleFile {
            name: String,
            #[serde(default, rename = "includedPermissions")]
            included_permissions: Vec<String>,
        }
        let mut roles = HashMap::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot read role catalogue {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        anyhow::ensure!(
            entries.len() <= MAX_CATALOGUE_FILES,
            "role catalogue {} has more than {MAX_CATALOGUE_FILES} files",
            dir.display()
        );
        entries.sort();
        for path in entries {
            let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let file: RoleFile = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: not a role description: {e}", path.display()))?;
            let name = if file.name.starts_with("roles/") || file.name.contains("/roles/") {
                file.name
            } else {
                format!("roles/{}", file.name)
            };
            roles.insert(
                name.clone(),
                Role { name, permissions: file.included_permissions.into_iter().collect(), custom: false },
            );
        }
        anyhow::ensure!(!roles.is_empty(), "role catalogue {} holds no role files", dir.display());
        Ok(RoleCatalog { origin: format!("{} ({} roles)", dir.display(), roles.len()), roles })
    }

    /// The built-in subset: the roles that matter most for escalation, with the permissions
    /// relevant to it (not full permission lists).
    pub fn builtin() -> RoleCatalog {
        let mut roles = HashMap::new();
        for (name, perms) in BUILTIN_ROLES {
            roles.insert(
                name.to_string(),
                Role {
                    name: name.to_string(),
                    permissions: perms.iter().map(|p| p.to_string()).collect(),
                    custom: false,
                },
            );
        }
        RoleCatalog {
            origin: format!("built-in subset ({} roles; pass --roles DIR for the full catalogue)", roles.len()),
            roles,
        }
    }

    pub fn add_custom(&mut self, name: &str, permissions: BTreeSet<String>) {
        self.roles.insert(name.to_string(), Role { name: name.to_string(), permissions, custom: true });
    }

    pub fn get(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    pub fn len(&self) -> usize {
        self.roles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    pub fn custom_roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values().filter(|r| r.custom)
    }
}

/// Role resolution (a catalogue, or a catalogue plus one root's custom roles).
pub trait RoleLookup {
    fn role(&self, name: &str) -> Option<&Role>;
}

impl RoleLookup for RoleCatalog {
    fn role(&self, name: &str) -> Option<&Role> {
        self.get(name)
    }
}

pub fn is_basic_role(role: &str) -> bool {
    matches!(role, "roles/owner" | "roles/editor" | "roles/viewer")
}

/// What a dangerous permission lets its holder do (the escalation method family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Danger {
    TokenCreation,
    SignBlob,
    SignJwt,
    OpenIdToken,
    ImplicitDelegation,
    KeyCreation,
    ActAs,
    SetIamPolicySa,
    SetIamPolicyProject,
    SetIamPolicyFolder,
    SetIamPolicyOrg,
    RoleUpdate,
    OrgPolicySet,
    HmacKey,
    ApiKey,
    WorkloadIdentityProvider,
    SecretAccess,
    DeploymentManager,
    /// A permission of the catalogue's tables (`crate::catalogue`): creating, updating or
    /// running a workload, getting into a VM, rewriting a resource's IAM policy.
    Workload,
}

/// The built-in list of dangerous permissions.
pub const DANGEROUS: &[(&str, Danger)] = &[
    ("iam.serviceAccounts.getAccessToken", Danger::TokenCreation),
    ("iam.serviceAccounts.signBlob", Danger::SignBlob),
    ("iam.serviceAccounts.signJwt", Danger::SignJwt),
    ("iam.serviceAccounts.getOpenIdToken", Danger::OpenIdToken),
    ("iam.serviceAccounts.implicitDelegation", Danger::ImplicitDelegation),
    ("iam.serviceAccountKeys.create", Danger::KeyCreation),
    ("iam.serviceAccounts.actAs", Danger::ActAs),
    ("iam.serviceAccounts.setIamPolicy", Danger::SetIamPolicySa),
    ("resourcemanager.projects.setIamPolicy", Danger::SetIamPolicyProject),
    ("resourcemanager.folders.setIamPolicy", Danger::SetIamPolicyFolder),
    ("resourcemanager.organizations.setIamPolicy", Danger::SetIamPolicyOrg),
    ("iam.roles.update", Danger::RoleUpdate),
    ("orgpolicy.policy.set", Danger::OrgPolicySet),
    ("storage.hmacKeys.create", Danger::HmacKey),
    ("apikeys.keys.create", Danger::ApiKey),
    ("serviceusage.apiKeys.create", Danger::ApiKey),
    ("iam.workloadIdentityPoolProviders.create", Danger::WorkloadIdentityProvider),
    ("iam.workloadIdentityPoolProviders.update", Danger::WorkloadIdentityProvider),
    ("secretmanager.versions.access", Danger::SecretAccess),
    ("deploymentmanager.deployments.create", Danger::DeploymentManager),
];

pub fn danger_of(permission: &str) -> Option<Danger> {
    DANGEROUS
        .iter()
        .find(|(p, _)| *p == permission)
        .map(|(_, d)| *d)
        .or_else(|| crate::catalogue::is_catalogued(permission).then_some(Danger::Workload))
}

const TOKEN_CREATOR: &[&str] = &[
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.getAccessToken",
    "iam.serviceAccounts.getOpenIdToken",
    "iam.serviceAccounts.implicitDelegation",
    "iam.serviceAccounts.signBlob",
    "iam.serviceAccounts.signJwt",
];

const BUILTIN_ROLES: &[(&str, &[&str])] = &[
    (
        "roles/owner",
        &[
            "resourcemanager.projects.setIamPolicy",
            "iam.serviceAccounts.actAs",
            "iam.serviceAccounts.getAccessToken",
            "iam.serviceAccountKeys.create",
            "iam.serviceAccounts.setIamPolicy",
            "iam.roles.update",
            "run.services.create",
            "compute.instances.create",
            "secretmanager.versions.access",
        ],
    ),
    (
        "roles/editor",
        &[
            "iam.serviceAccounts.actAs",
            "iam.serviceAccountKeys.create",
            "run.services.create",
            "compute.instances.create",
            "cloudfunctions.functions.create",
        ],
    ),
    ("roles/viewer", &["resourcemanager.projects.get"]),
    ("roles/iam.serviceAccountTokenCreator", TOKEN_CREATOR),
    (
        "roles/iam.serviceAccountUser",
        &["iam.serviceAccounts.actAs", "iam.serviceAccounts.get", "iam.serviceAccounts.list"],
    ),
    (
        "roles/iam.workloadIdentityUser",
        &[
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.getAccessToken",
            "iam.serviceAccounts.getOpenIdToken",
            "iam.serviceAccounts.list",
        ],
    ),
    (
        "roles/iam.serviceAccountKeyAdmin",
        &["iam.serviceAccountKeys.create", "iam.serviceAccountKeys.delete", "iam.serviceAccountKeys.get"],
    ),
    (
        "roles/iam.serviceAccountAdmin",
        &["iam.serviceAccounts.setIamPolicy", "iam.serviceAccounts.create", "iam.serviceAccounts.get"],
    ),
    ("roles/iam.roleAdmin", &["iam.roles.create", "iam.roles.update", "iam.roles.get"]),
    (
        "roles/iam.securityAdmin",
        &[
            "resourcemanager.projects.setIamPolicy",
            "iam.serviceAccounts.setIamPolicy",
            "resourcemanager.projects.getIamPolicy",
        ],
    ),
    (
        "roles/resourcemanager.projectIamAdmin",
        &["resourcemanager.projects.setIamPolicy", "resourcemanager.projects.getIamPolicy"],
    ),
    (
        "roles/resourcemanager.folderIamAdmin",
        &["resourcemanager.folders.setIamPolicy", "resourcemanager.folders.getIamPolicy"],
    ),
    (
        "roles/resourcemanager.organizationAdmin",
        &["resourcemanager.organizations.setIamPolicy", "resourcemanager.projects.setIamPolicy"],
    ),
    ("roles/orgpolicy.policyAdmin", &["orgpolicy.policy.set", "orgpolicy.policy.get"]),
    ("roles/run.admin", &["run.services.create", "run.services.update", "run.jobs.create"]),
    ("roles/run.developer", &["run.services.create", "run.services.update"]),
    ("roles/run.invoker", &["run.routes.invoke"]),
    ("roles/cloudfunctions.admin", &["cloudfunctions.functions.create", "cloudfunctions.functions.update"]),
    ("roles/cloudfunctions.developer", &["cloudfunctions.functions.create", "cloudfunctions.functions.update"]),
    ("roles/compute.instanceAdmin.v1", &["compute.instances.create", "compute.instances.setMetadata"]),
    ("roles/cloudbuild.builds.editor", &["cloudbuild.builds.create"]),
    ("roles/cloudscheduler.admin", &["cloudscheduler.jobs.create"]),
    ("roles/composer.admin", &["composer.environments.create"]),
    ("roles/dataflow.developer", &["dataflow.jobs.create"]),
    ("roles/dataproc.editor", &["dataproc.clusters.create"]),
    ("roles/storage.hmacKeyAdmin", &["storage.hmacKeys.create"]),
    ("roles/serviceusage.apiKeysAdmin", &["serviceusage.apiKeys.create"]),
    (
        "roles/iam.workloadIdentityPoolAdmin",
        &["iam.workloadIdentityPoolProviders.create", "iam.workloadIdentityPoolProviders.update"],
    ),
    ("roles/secretmanager.secretAccessor", &["secretmanager.versions.access"]),
    ("roles/deploymentmanager.editor", &["deploymentmanager.deployments.create"]),
    ("roles/logging.logWriter", &["logging.logEntries.create"]),
    ("roles/monitoring.metricWriter", &["monitoring.timeSeries.create"]),
    ("roles/cloudsql.client", &["cloudsql.instances.connect", "cloudsql.instances.get"]),
    ("roles/storage.objectViewer", &["storage.objects.get", "storage.objects.list"]),
    ("roles/storage.objectAdmin", &["storage.objects.create", "storage.objects.delete", "storage.objects.get"]),
    ("roles/iam.serviceAccountViewer", &["iam.serviceAccounts.get", "iam.serviceAccounts.list"]),
    ("roles/bigquery.dataEditor", &["bigquery.tables.updateData", "bigquery.tables.getData"]),
    ("roles/pubsub.publisher", &["pubsub.topics.publish"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_the_escalation_roles() {
        let c = RoleCatalog::builtin();
        assert!(c
            .get("roles/iam.serviceAccountTokenCreator")
            .is_some_and(|r| r.permissions.contains("iam.serviceAccounts.getAccessToken")));
        assert_eq!(danger_of("iam.serviceAccounts.actAs"), Some(Danger::ActAs));
        assert_eq!(danger_of("storage.objects.get"), None);
        assert_eq!(danger_of("run.jobs.create"), Some(Danger::Workload));
    }

    #[test]
    fn malformed_catalogue_is_an_error() {
        let dir = std::env::temp_dir().join(format!("fintrail-iam-roles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        std::fs::write(dir.join("bad.json"), "{ not json").expect("write");
        let err = RoleCatalog::load_dir(&dir).expect_err("must fail");
        assert!(err.to_string().contains("bad.json"), "{err}");
        std::fs::write(dir.join("bad.json"), r#"{"name":"roles/x.y","includedPermissions":["a.b.c"]}"#).expect("write");
        let ok = RoleCatalog::load_dir(&dir).expect("loads");
        assert!(ok.get("roles/x.y").is_some_and(|r| r.permissions.contains("a.b.c")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
