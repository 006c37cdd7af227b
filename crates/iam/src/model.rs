//! The facts the rules and the graph work on, extracted from evaluated resources (HCL), from a
//! `tofu show -json` plan, or from an exported IAM policy: effective bindings (member, role,
//! resource, condition, file:line), custom roles, service accounts, keys, org policies...

use crate::eval::{ResInstance, ADDR_KEY};
use crate::source::{Loc, Mode};
use crate::value::{is_symbolic, Value};
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Organization,
    Folder,
    Project,
    ServiceAccount,
    Other,
}

/// The resource a binding is attached to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Target {
    pub kind: TargetKind,
    pub id: String,
}

impl Target {
    pub fn key(&self) -> String {
        match self.kind {
            TargetKind::Organization => format!("organizations/{}", self.id),
            TargetKind::Folder => format!("folders/{}", self.id),
            TargetKind::Project => format!("projects/{}", self.id),
            TargetKind::ServiceAccount => format!("serviceAccounts/{}", self.id),
            TargetKind::Other => self.id.clone(),
        }
    }
    /// Project, folder or organization: a grant here applies to everything beneath.
    pub fn is_container(&self) -> bool {
        matches!(self.kind, TargetKind::Organization | TargetKind::Folder | TargetKind::Project)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Condition {
    pub title: String,
    pub expression: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Binding {
    pub member: String,
    pub role: String,
    pub target: Target,
    pub condition: Option<Condition>,
    pub loc: Loc,
    /// Resource address that declares it (e.g. `module.iam.google_project_iam_member.x["a"]`).
    pub address: String,
    /// Its IAM condition cannot be decided statically: it may or may not apply
    /// (`crate::analyze::condition_verdict`). Set before the graph is built.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub conditional: bool,
}

impl Binding {
    /// Symbolic parts (values only known after a plan).
    pub fn symbolic(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, text) in [("member", &self.member), ("role", &self.role), ("resource", &self.target.id)] {
            if is_symbolic(text) {
                out.push(format!("{what} {text} is known only after plan"));
            }
        }
        out
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CustomRole {
    pub name: String,
    pub permissions: BTreeSet<String>,
    pub loc: Loc,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceAccount {
    pub email: String,
    pub project: String,
    pub loc: Loc,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyResource {
    /// `service-account-key`, `hmac-key` or `api-key`.
    pub kind: &'static str,
    pub service_account: Option<String>,
    pub address: String,
    pub loc: Loc,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct OrgPolicy {
    pub constraint: String,
    pub parent: Target,
    /// The policy relaxes the constraint (allow all / not enforced / extra allowed values).
    pub relaxes: bool,
    /// The relaxation is limited by a condition (e.g. tags on one resource).
    pub conditional: bool,
    /// A boolean constraint enforced without a condition (it guards whatever it forbids).
    pub enforces: bool,
    pub address: String,
    pub loc: Loc,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupMembership {
    pub group: String,
    pub member: String,
    pub loc: Loc,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Instance {
    pub service_account: String,
    pub project: String,
    /// Its `name` attribute (resource-level bindings name the instance).
    pub name: String,
    /// A `network_interface` has an `access_config`: reachable without IAP.
    pub external_ip: bool,
    pub address: String,
    pub loc: Loc,
}

/// An existing workload of a kind of `crate::catalogue::WORKLOADS`, with the identity it runs as.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Workload {
    pub kind: &'static str,
    pub service_account: String,
    pub project: String,
    pub name: String,
    /// The kind's `concealed_by` attribute is set (e.g. GKE Workload Identity).
    pub concealed: bool,
    pub address: String,
    pub loc: Loc,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WifProvider {
    pub pool: String,
    pub project: String,
    pub has_condition: bool,
    /// The `attribute_condition` text, when the code gives it.
    pub attribute_condition: Option<String>,
    pub address: String,
    pub loc: Loc,
}

/// One rule of a `google_iam_deny_policy`: these principals may not use these permissions on
/// anything under `parent`, unless excepted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DenyRule {
    pub parent: Target,
    /// Members in allow-policy form (`user:`, `group:`, `serviceAccount:`); `*` is everyone.
    pub principals: Vec<String>,
    pub exception_principals: Vec<String>,
    /// Permissions in allow-policy form (`iam.serviceAccounts.getAccessToken`); a trailing `*`
    /// matches a prefix.
    pub permissions: Vec<String>,
    pub exception_permissions: Vec<String>,
    /// A `denial_condition`: not decided statically, so the rule is not relied on.
    pub conditional: bool,
    pub loc: Loc,
}

impl DenyRule {
    /// Whether the rule denies `permission` to `member` (its condition aside).
    pub fn denies(&self, member: &str, permission: &str) -> bool {
        let perm_matches = |p: &String| match p.strip_suffix('*') {
            Some(prefix) => permission.starts_with(prefix),
            None => p == permission,
        };
        let member_matches = |m: &String| m == "*" || m == member;
        self.principals.iter().any(member_matches)
            && !self.exception_principals.iter().any(member_matches)
            && self.permissions.iter().any(perm_matches)
            && !self.exception_permissions.iter().any(perm_matches)
    }
}

/// Deny-policy principal → allow-policy member (`principal://goog/subject/a@x` → `user:a@x`).
fn deny_principal(p: &str) -> String {
    if let Some(email) = p.strip_prefix("principal://goog/subject/") {
        format!("user:{email}")
    } else if let Some(g) = p.strip_prefix("principalSet://goog/group/") {
        format!("group:{g}")
    } else if let Some((_, email)) = p.split_once("/serviceAccounts/") {
        format!("serviceAccount:{email}")
    } else if p == "principalSet://goog/public:all" {
        "*".to_string()
    } else {
        p.to_string()
    }
}

/// Deny-policy permission → allow-policy name (`iam.googleapis.com/serviceAccounts.getAccessToken`
/// → `iam.serviceAccounts.getAccessToken`).
fn deny_permission(p: &str) -> String {
    match p.split_once(".googleapis.com/") {
        Some((service, rest)) => format!("{service}.{rest}"),
        None => p.to_string(),
    }
}

/// `google_iam_deny_policy`: its parent is the URL-encoded full resource name.
fn deny_rules(r: &Res<'_>) -> Vec<DenyRule> {
    let parent = s(r.attrs, "parent").unwrap_or_default().replace("%2F", "/").replace("%2f", "/");
    let parent = parent_target(parent.strip_prefix("cloudresourcemanager.googleapis.com/").unwrap_or(&parent));
    let rules = match r.attrs.get("rules") {
        Some(Value::List(l)) => l,
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for rule in rules.iter().take(MAX_DENY_RULES) {
        let Some(d) = first_block(rule, "deny_rule") else {
            continue;
        };
        let map =
            |key: &str, f: fn(&str) -> String| -> Vec<String> { strings(d.get(key)).iter().map(|x| f(x)).collect() };
        out.push(DenyRule {
            parent: parent.clone(),
            principals: map("denied_principals", deny_principal),
            exception_principals: map("exception_principals", deny_principal),
            permissions: map("denied_permissions", deny_permission),
            exception_permissions: map("exception_permissions", deny_permission),
            conditional: first_block(&d, "denial_condition").is_some(),
            loc: r.loc.clone(),
        });
    }
    out
}

/// Google allows 500 rules a deny policy; more is not a deny policy.
const MAX_DENY_RULES: usize = 500;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectParent {
    pub project: String,
    pub parent: Target,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Inventory {
    pub bindings: Vec<Binding>,
    pub custom_roles: Vec<CustomRole>,
    pub service_accounts: Vec<ServiceAccount>,
    pub keys: Vec<KeyResource>,
    pub org_policies: Vec<OrgPolicy>,
    pub group_memberships: Vec<GroupMembership>,
    pub instances: Vec<Instance>,
    pub workloads: Vec<Workload>,
    pub deny_rules: Vec<DenyRule>,
    pub wif_providers: Vec<WifProvider>,
    pub project_parents: Vec<ProjectParent>,
    pub folder_parents: Vec<(String, Target)>,
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.to_symbolic_string())
}

fn first_block(v: &Value, key: &str) -> Option<Value> {
    match v.get(key)? {
        Value::List(l) => l.first().cloned(),
        m @ Value::Map(_) => Some(m),
        _ => None,
    }
}

fn strings(v: Option<Value>) -> Vec<String> {
    match v {
        Some(Value::List(l)) => l.iter().filter_map(Value::to_symbolic_string).collect(),
        Some(other) => other.to_symbolic_string().into_iter().collect(),
        None => Vec::new(),
    }
}

/// The block at a path of nested blocks (each through its first element).
fn at_block(v: &Value, path: &[&str]) -> Option<Value> {
    let mut cur = v.clone();
    for key in path {
        cur = first_block(&cur, key)?;
    }
    Some(cur)
}

/// The string at a path of nested blocks ending in an attribute; empty strings are absent.
fn at_path(v: &Value, path: &[&str]) -> Option<String> {
    let (last, blocks) = path.split_last()?;
    let block = at_block(v, blocks)?;
    s(&block, last).filter(|text| !text.trim().is_empty())
}

/// `projects/p/serviceAccounts/e@x` → `e@x`.
pub fn sa_email(id: &str) -> String {
    match id.rsplit_once("/serviceAccounts/") {
        Some((_, e)) => e.to_string(),
        None => id.to_string(),
    }
}

fn strip(text: &str, prefix: &str) -> String {
    text.strip_prefix(prefix).unwrap_or(text).to_string()
}

/// The project of a service-account email (`x@p.iam.gserviceaccount.com` → `p`).
pub fn sa_project(email: &str) -> Option<String> {
    let (_, domain) = email.split_once('@')?;
    domain.strip_suffix(".iam.gserviceaccount.com").map(str::to_string)
}

fn condition(attrs: &Value) -> Option<Condition> {
    let c = first_block(attrs, "condition")?;
    Some(Condition { title: s(&c, "title").unwrap_or_default(), expression: s(&c, "expression").unwrap_or_default() })
}

/// The target of a `google_X_iam_*` resource.
fn iam_target(prefix: &str, attrs: &Value, default_project: &str) -> Target {
    match prefix {
        "project" => Target {
            kind: TargetKind::Project,
            id: strip(&s(attrs, "project").unwrap_or_else(|| default_project.to_string()), "projects/"),
        },
        "folder" => Target { kind: TargetKind::Folder, id: strip(&s(attrs, "folder").unwrap_or_default(), "folders/") },
        "organization" => Target {
            kind: TargetKind::Organization,
            id: strip(&s(attrs, "org_id").unwrap_or_default(), "organizations/"),
        },
        "service_account" => Target {
            kind: TargetKind::ServiceAccount,
            id: sa_email(&s(attrs, "service_account_id").unwrap_or_default()),
        },
        other => {
            const ID_KEYS: &[&str] = &[
                "bucket",
                "secret_id",
                "topic",
                "subscription",
                "dataset_id",
                "table_id",
                "crypto_key_id",
                "key_ring_id",
                "repository",
                "service",
                "cloud_function",
                "instance_name",
                "instance",
                "name",
                "job",
            ];
            let id = ID_KEYS.iter().find_map(|k| s(attrs, k)).unwrap_or_else(|| "?".into());
            Target { kind: TargetKind::Other, id: format!("{other}:{id}") }
        }
    }
}

/// Bindings of a policy document: `{bindings: [{role, members, condition}]}` (also the
/// `binding` blocks of `data.google_iam_policy`, or a JSON string of it).
fn policy_bindings(policy: &Value) -> Vec<(String, Vec<String>, Option<Condition>)> {
    let policy = match policy {
        Value::String(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(j) => Value::from_json(&j),
            Err(_) => return Vec::new(),
        },
        other => other.clone(),
    };
    let list = match policy.get("bindings").or_else(|| policy.get("binding")) {
        Some(Value::List(l)) => l,
        _ => return Vec::new(),
    };
    list.iter()
        .map(|b| {
            let cond = first_block(b, "condition").map(|c| Condition {
                title: s(&c, "title").unwrap_or_default(),
                expression: s(&c, "expression").unwrap_or_default(),
            });
            (s(b, "role").unwrap_or_else(|| "${role}".into()), strings(b.get("members")), cond)
        })
        .collect()
}

impl Inventory {
    /// Extracts facts from evaluated resource instances.
    pub fn from_resources(resources: &[ResInstance], default_project: &str) -> Inventory {
        let mut inv = Inventory::default();
        for r in resources {
            if r.mode == Mode::Data {
                continue;
            }
            inv.add_resource(&r.rtype, &r.attrs, &r.address, &r.loc, default_project);
        }
        inv.finish();
        inv
    }

    /// Derived facts and deterministic order.
    pub fn finish(&mut self) {
        // Service accounts mentioned anywhere (bindings, members) are nodes too.
        let mut known: BTreeSet<String> = self.service_accounts.iter().map(|s| s.email.clone()).collect();
        let mut extra = Vec::new();
        for b in &self.bindings {
            let mut emails = Vec::new();
            if let Some(e) = b.member.strip_prefix("serviceAccount:") {
                emails.push(e.to_string());
            }
            if b.target.kind == TargetKind::ServiceAccount {
                emails.push(b.target.id.clone());
            }
            for e in emails {
                if known.insert(e.clone()) {
                    if let Some(p) = sa_project(&e) {
                        extra.push(ServiceAccount { email: e, project: p, loc: b.loc.clone() });
                    }
                }
            }
        }
        self.service_accounts.extend(extra);
        self.bindings.sort_by(|a, b| (&a.loc, &a.member, &a.role).cmp(&(&b.loc, &b.member, &b.role)));
    }

    /// Facts of one managed resource (bindings, roles, accounts, keys, policies...).
    pub fn add_resource(&mut self, rtype: &str, attrs: &Value, address: &str, loc: &Loc, default_project: &str) {
        let project = s(attrs, "project").unwrap_or_else(|| default_project.to_string());
        let r = Res { rtype, attrs, address, loc, project };
        self.add_workload(&r);
        if let Some((prefix, kind)) = iam_resource(rtype) {
            let target = iam_target(prefix, attrs, default_project);
            self.add_iam(&r, kind, &target);
            return;
        }
        match rtype {
            "google_project_iam_custom_role" | "google_organization_iam_custom_role" => {
                let name = s(attrs, "name").or_else(|| s(attrs, "id")).unwrap_or_default();
                let permissions = strings(attrs.get("permissions")).into_iter().collect();
                self.custom_roles.push(CustomRole { name, permissions, loc: loc.clone() });
            }
            "google_service_account" => {
                if let Some(email) = s(attrs, "email") {
                    self.service_accounts.push(ServiceAccount { email, project: r.project, loc: loc.clone() });
                }
            }
            "google_service_account_key" => {
                self.add_key(&r, "service-account-key", s(attrs, "service_account_id").map(|x| sa_email(&x)))
            }
            "google_storage_hmac_key" => self.add_key(&r, "hmac-key", s(attrs, "service_account_email")),
            "google_apikeys_key" => self.add_key(&r, "api-key", None),
            "google_org_policy_policy" => self.org_policies.push(org_policy(&r)),
            "google_project_organization_policy"
            | "google_folder_organization_policy"
            | "google_organization_policy" => self.org_policies.push(legacy_org_policy(&r)),
            "google_cloud_identity_group_membership" => self.add_group_membership(&r),
            "google_compute_instance" | "google_compute_instance_template" => self.add_instance(&r),
            "google_iam_workload_identity_pool_provider" => self.wif_providers.push(wif_provider(r)),
            "google_iam_deny_policy" => self.deny_rules.extend(deny_rules(&r)),
            "google_project" => self.add_project_parent(&r),
            "google_folder" => {
                let id = s(attrs, "folder_id").or_else(|| s(attrs, "name")).map(|x| strip(&x, "folders/"));
                if let (Some(id), Some(parent)) = (id, s(attrs, "parent")) {
                    self.folder_parents.push((id, parent_target(&parent)));
                }
            }
            _ => {}
        }
    }

    /// The bindings of a `google_X_iam_member`, `_iam_binding` or `_iam_policy`.
    fn add_iam(&mut self, r: &Res<'_>, kind: IamKind, target: &Target) {
        let mut push = |member: String, role: String, cond: Option<Condition>| {
            self.bindings.push(Binding {
                member: member.trim().to_string(),
                role,
                target: target.clone(),
                condition: cond,
                loc: r.loc.clone(),
                address: r.address.to_string(),
                conditional: false,
            });
        };
        let (attrs, address) = (r.attrs, r.address);
        match kind {
            IamKind::Member => push(
                s(attrs, "member").unwrap_or_else(|| format!("${{{address}.member}}")),
                s(attrs, "role").unwrap_or_else(|| format!("${{{address}.role}}")),
                condition(attrs),
            ),
            IamKind::Binding => {
                let role = s(attrs, "role").unwrap_or_else(|| format!("${{{address}.role}}"));
                let members = match attrs.get("members") {
                    Some(Value::Unknown(u)) => vec![crate::value::symbolic_fragment(&u)],
                    other => strings(other),
                };
                for m in members {
                    push(m, role.clone(), condition(attrs));
                }
            }
            IamKind::Policy => {
                let policy = attrs.get("policy_data").unwrap_or(Value::Null);
                for (role, members, cond) in policy_bindings(&policy) {
                    for m in members {
                        push(m, role.clone(), cond.clone());
                    }
                }
            }
        }
    }

    fn add_instance(&mut self, r: &Res<'_>) {
        let Some(sa) = first_block(r.attrs, "service_account").and_then(|b| s(&b, "email")) else {
            return;
        };
        let external_ip = match r.attrs.get("network_interface") {
            Some(Value::List(nics)) => nics.iter().any(|n| first_block(n, "access_config").is_some()),
            Some(nic @ Value::Map(_)) => first_block(&nic, "access_config").is_some(),
            _ => false,
        };
        self.instances.push(Instance {
            service_account: sa,
            project: r.project.clone(),
            name: s(r.attrs, "name").unwrap_or_default(),
            external_ip,
            address: r.address.to_string(),
            loc: r.loc.clone(),
        });
    }

    /// A resource of a workload kind of the catalogue that names the identity it runs as.
    fn add_workload(&mut self, r: &Res<'_>) {
        for kind in crate::catalogue::WORKLOADS {
            let identity = kind
                .resources
                .iter()
                .filter(|(rtype, _)| *rtype == r.rtype)
                .find_map(|(_, path)| at_path(r.attrs, path));
            let Some(identity) = identity else {
                continue;
            };
            self.workloads.push(Workload {
                kind: kind.name,
                service_account: sa_email(&identity),
                project: r.project.clone(),
                name: s(r.attrs, "name").unwrap_or_default(),
                concealed: !kind.concealed_by.is_empty() && at_block(r.attrs, kind.concealed_by).is_some(),
                address: r.address.to_string(),
                loc: r.loc.clone(),
            });
        }
    }

    fn add_key(&mut self, r: &Res<'_>, kind: &'static str, service_account: Option<String>) {
        self.keys.push(KeyResource { kind, service_account, address: r.address.to_string(), loc: r.loc.clone() });
    }

    fn add_group_membership(&mut self, r: &Res<'_>) {
        let group = strip(&s(r.attrs, "group").unwrap_or_default(), "groups/");
        let member = first_block(r.attrs, "preferred_member_key").and_then(|k| s(&k, "id")).unwrap_or_default();
        if group.is_empty() || member.is_empty() {
            return;
        }
        let member = if member.contains(".iam.gserviceaccount.com") {
            format!("serviceAccount:{member}")
        } else {
            format!("user:{member}")
        };
        self.group_memberships.push(GroupMembership { group: format!("group:{group}"), member, loc: r.loc.clone() });
    }

    fn add_project_parent(&mut self, r: &Res<'_>) {
        let pid = s(r.attrs, "project_id").unwrap_or_default();
        let parent = if let Some(f) = s(r.attrs, "folder_id") {
            Some(Target { kind: TargetKind::Folder, id: strip(&f, "folders/") })
        } else {
            s(r.attrs, "org_id").map(|o| Target { kind: TargetKind::Organization, id: strip(&o, "organizations/") })
        };
        if let Some(parent) = parent {
            self.project_parents.push(ProjectParent { project: pid, parent });
        }
    }

    /// Facts from a `tofu show -json` plan (planned values, all modules).
    pub fn from_plan(plan: &serde_json::Value, file: &str) -> Inventory {
        let mut inv = Inventory::default();
        fn walk(inv: &mut Inventory, module: &serde_json::Value, file: &str, depth: u32) {
            if depth > 32 {
                return;
            }
            if let Some(resources) = module.get("resources").and_then(|r| r.as_array()) {
                for r in resources {
                    if r.get("mode").and_then(|m| m.as_str()) == Some("data") {
                        continue;
                    }
                    let rtype = r.get("type").and_then(|t| t.as_str()).unwrap_or_default();
                    let address = r.get("address").and_then(|t| t.as_str()).unwrap_or_default();
                    let mut attrs = match r.get("values").map(Value::from_json) {
                        Some(Value::Map(m)) => m,
                        _ => Default::default(),
                    };
                    attrs.insert(ADDR_KEY.to_string(), Value::String(address.to_string()));
                    let loc = Loc { file: format!("{file}#{address}"), line: 0 };
                    let attrs = Value::Map(attrs);
                    let project = s(&attrs, "project").unwrap_or_else(|| "${provider.project}".into());
                    if rtype == "google_service_account" && attrs.get("email").is_some_and(|e| matches!(e, Value::Null))
                    {
                        continue;
                    }
                    inv.add_resource(rtype, &attrs, address, &loc, &project);
                }
            }
            if let Some(children) = module.get("child_modules").and_then(|c| c.as_array()) {
                for c in children {
                    walk(inv, c, file, depth + 1);
                }
            }
        }
        if let Some(root) = plan.get("planned_values").and_then(|p| p.get("root_module")) {
            walk(&mut inv, root, file, 0);
        }
        inv.finish();
        inv
    }

    /// Facts from an exported IAM policy (`gcloud projects get-iam-policy --format=json`).
    pub fn from_policy(policy: &serde_json::Value, file: &str, target: Target) -> Inventory {
        let mut inv = Inventory::default();
        let value = Value::from_json(policy);
        for (i, (role, members, cond)) in policy_bindings(&value).into_iter().enumerate() {
            for m in members {
                inv.bindings.push(Binding {
                    member: m,
                    role: role.clone(),
                    target: target.clone(),
                    condition: cond.clone(),
                    loc: Loc { file: file.to_string(), line: 0 },
                    address: format!("bindings[{i}]"),
                    conditional: false,
                });
            }
        }
        inv.finish();
        inv
    }
}

/// One resource instance being turned into facts.
struct Res<'a> {
    rtype: &'a str,
    attrs: &'a Value,
    address: &'a str,
    loc: &'a Loc,
    /// Its `project` attribute, else the provider's default project.
    project: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IamKind {
    Member,
    Binding,
    Policy,
}

/// `google_X_iam_member` / `_iam_binding` / `_iam_policy` → (X, kind).
fn iam_resource(rtype: &str) -> Option<(&str, IamKind)> {
    const KINDS: [(&str, IamKind); 3] =
        [("_iam_member", IamKind::Member), ("_iam_binding", IamKind::Binding), ("_iam_policy", IamKind::Policy)];
    let rest = rtype.strip_prefix("google_")?;
    KINDS.iter().find_map(|(suffix, kind)| rest.strip_suffix(suffix).map(|prefix| (prefix, *kind)))
}

/// `google_org_policy_policy`: relaxes when a rule allows all, is not enforced or lists allowed
/// values; conditional when such a rule has a condition.
fn org_policy(r: &Res<'_>) -> OrgPolicy {
    let parent = parent_target(&s(r.attrs, "parent").unwrap_or_default());
    let name = s(r.attrs, "name").unwrap_or_default();
    let constraint = name.rsplit_once("/policies/").map(|(_, c)| c.to_string()).unwrap_or(name);
    let mut relaxes = false;
    let mut conditional = false;
    // `inherit_from_parent = false` in the spec is not a relaxation by itself.
    let rules = match first_block(r.attrs, "spec").and_then(|spec| spec.get("rules")) {
        Some(Value::List(rules)) => rules,
        _ => Vec::new(),
    };
    let mut enforces = false;
    for rule in &rules {
        enforces |= s(rule, "enforce").is_some_and(|x| x.eq_ignore_ascii_case("true"))
            && first_block(rule, "condition").is_none();
        let allow_all = s(rule, "allow_all").is_some_and(|x| x.eq_ignore_ascii_case("true"));
        let not_enforced = s(rule, "enforce").is_some_and(|x| x.eq_ignore_ascii_case("false"));
        let allowed_values =
            first_block(rule, "values").map(|v| !strings(v.get("allowed_values")).is_empty()).unwrap_or(false);
        if allow_all || not_enforced || allowed_values {
            relaxes = true;
            if first_block(rule, "condition").is_some() {
                conditional = true;
            }
        }
    }
    OrgPolicy { constraint, parent, relaxes, conditional, enforces, address: r.address.to_string(), loc: r.loc.clone() }
}

/// `google_{project,folder,organization}_organization_policy` (the v1 API): never conditional.
fn legacy_org_policy(r: &Res<'_>) -> OrgPolicy {
    let attrs = r.attrs;
    let parent = match r.rtype {
        "google_project_organization_policy" => Target { kind: TargetKind::Project, id: r.project.clone() },
        "google_folder_organization_policy" => {
            Target { kind: TargetKind::Folder, id: strip(&s(attrs, "folder").unwrap_or_default(), "folders/") }
        }
        _ => Target {
            kind: TargetKind::Organization,
            id: strip(&s(attrs, "org_id").unwrap_or_default(), "organizations/"),
        },
    };
    let relaxes = first_block(attrs, "list_policy").is_some_and(|lp| {
        first_block(&lp, "allow")
            .is_some_and(|a| s(&a, "all").is_some_and(|x| x == "true") || !strings(a.get("values")).is_empty())
    }) || first_block(attrs, "boolean_policy")
        .is_some_and(|b| s(&b, "enforced").is_some_and(|x| x == "false"));
    let enforces = first_block(attrs, "boolean_policy").is_some_and(|b| s(&b, "enforced").is_some_and(|x| x == "true"));
    OrgPolicy {
        constraint: strip(&s(attrs, "constraint").unwrap_or_default(), "constraints/"),
        parent,
        relaxes,
        conditional: false,
        enforces,
        address: r.address.to_string(),
        loc: r.loc.clone(),
    }
}

fn wif_provider(r: Res<'_>) -> WifProvider {
    let pool = s(r.attrs, "workload_identity_pool_id").unwrap_or_default();
    let pool = pool.rsplit('/').next().unwrap_or_default().to_string();
    WifProvider {
        pool,
        project: r.project,
        has_condition: s(r.attrs, "attribute_condition").is_some_and(|c| !c.trim().is_empty()),
        attribute_condition: s(r.attrs, "attribute_condition").filter(|c| !c.trim().is_empty()),
        address: r.address.to_string(),
        loc: r.loc.clone(),
    }
}

/// Token claims that narrow a federated principal set below a whole repository (GitHub's
/// and GitLab's OIDC claims): the branch or tag, the workflow, the event, the environment.
const NARROWING_CLAIMS: &[&str] =
    &["ref", "ref_type", "workflow", "workflow_ref", "job_workflow_ref", "event_name", "environment", "sub"];

/// How wide the set of external identities behind a workload identity federation member is,
/// given the attribute_condition of its pool's provider(s). `None` when `member` is not one.
pub fn federation_width(member: &str, providers: &[&WifProvider]) -> Option<String> {
    let (_, rest) = member.split_once("/workloadIdentityPools/")?;
    let (pool, selector) = rest.split_once('/').unwrap_or((rest, ""));
    let set = if let Some(subject) = selector.strip_prefix("subject/") {
        return Some(format!("one subject ({subject}) of pool {pool}"));
    } else if let Some((attribute, value)) = selector.strip_prefix("attribute.").and_then(|a| a.split_once('/')) {
        format!("every identity of pool {pool} whose {attribute} is {value}")
    } else {
        format!("every identity of pool {pool}")
    };
    let conditions: Vec<&str> =
        providers.iter().filter(|p| p.pool == pool).map(|p| p.attribute_condition.as_deref().unwrap_or("")).collect();
    let width = if conditions.is_empty() {
        "no provider of the pool in this code".to_string()
    } else if conditions.iter().any(|c| c.trim().is_empty()) {
        "a provider has no attribute_condition: any identity its issuer vouches for".to_string()
    } else {
        let narrowed: Vec<&str> = NARROWING_CLAIMS
            .iter()
            .copied()
            .filter(|claim| {
                conditions.iter().all(|c| {
                    c.contains(&format!("assertion.{claim} "))
                        || c.contains(&format!("assertion.{claim}=="))
                        || c.contains(&format!("attribute.{claim} "))
                })
            })
            .collect();
        if narrowed.is_empty() {
            "any branch, tag, workflow and event: anyone who can push a branch".to_string()
        } else {
            format!("narrowed by attribute_condition on {}", narrowed.join(", "))
        }
    };
    Some(format!("{set}; {width}"))
}

/// `organizations/1`, `folders/2`, `projects/p` → target.
pub fn parent_target(text: &str) -> Target {
    if let Some(o) = text.strip_prefix("organizations/") {
        Target { kind: TargetKind::Organization, id: o.to_string() }
    } else if let Some(f) = text.strip_prefix("folders/") {
        Target { kind: TargetKind::Folder, id: f.to_string() }
    } else {
        Target { kind: TargetKind::Project, id: strip(text, "projects/") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_resource_names_the_target_prefix_and_kind() {
        assert_eq!(iam_resource("google_project_iam_member"), Some(("project", IamKind::Member)));
        assert_eq!(iam_resource("google_storage_bucket_iam_binding"), Some(("storage_bucket", IamKind::Binding)));
        assert_eq!(iam_resource("google_service_account_iam_policy"), Some(("service_account", IamKind::Policy)));
        // Custom roles, audit configs and non-Google resources are not bindings.
        assert_eq!(iam_resource("google_project_iam_custom_role"), None);
        assert_eq!(iam_resource("google_project_iam_audit_config"), None);
        assert_eq!(iam_resource("aws_iam_member"), None);
    }

    #[test]
    fn federation_width_says_how_wide_the_principal_set_is() {
        let provider = |condition: Option<&str>| WifProvider {
            pool: "gh".into(),
            project: "p".into(),
            has_condition: condition.is_some(),
            attribute_condition: condition.map(str::to_string),
            address: "a".into(),
            loc: Loc { file: "m.tf".into(), line: 1 },
        };
        let repo = "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/gh/attribute.repository/acme/app";
        let width = |c: Option<&str>| federation_width(repo, &[&provider(c)]).expect("a federated member");
        assert!(width(None).contains("no attribute_condition"), "{}", width(None));
        let whole = width(Some("assertion.repository == \"acme/app\""));
        assert!(
            whole.contains("repository is acme/app") && whole.contains("any branch, tag, workflow and event"),
            "{whole}"
        );
        let narrow = width(Some("assertion.repository == \"acme/app\" && assertion.ref == \"refs/heads/main\""));
        assert!(narrow.ends_with("narrowed by attribute_condition on ref"), "{narrow}");
        let subject = "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/gh/subject/repo:acme/app:ref:refs/heads/main";
        assert!(federation_width(subject, &[]).is_some_and(|w| w.starts_with("one subject")));
        assert_eq!(federation_width("user:a@acme.com", &[]), None);
    }

    #[test]
    fn legacy_org_policy_relaxes_only_when_allowing() {
        let loc = Loc { file: "main.tf".into(), line: 3 };
        let mut inv = Inventory::default();
        let attrs = |json: serde_json::Value| Value::from_json(&json);
        let allow_all = attrs(serde_json::json!({
            "org_id": "organizations/9", "constraint": "constraints/iam.x", "list_policy": [{"allow": [{"all": true}]}]
        }));
        inv.add_resource("google_organization_policy", &allow_all, "a", &loc, "p");
        let enforced = attrs(serde_json::json!({"folder": "folders/7", "boolean_policy": [{"enforced": true}]}));
        inv.add_resource("google_folder_organization_policy", &enforced, "b", &loc, "p");
        let [a, b] = inv.org_policies.as_slice() else { panic!("two policies: {:?}", inv.org_policies) };
        assert_eq!((a.constraint.as_str(), a.parent.key(), a.relaxes), ("iam.x", "organizations/9".to_string(), true));
        assert_eq!((b.parent.key(), b.relaxes, b.conditional), ("folders/7".to_string(), false, false));
    }
}
