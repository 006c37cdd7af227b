//! The escalation graph (petgraph): nodes are principals and "control of" resources
//! (organizations, folders, projects); an edge says "can act as / can gain", labelled with the
//! method, the permission and the binding(s) (file:line) that grant it. Paths from a principal
//! to a more privileged principal, or to control of a resource (self-escalation), are listed
//! shortest witness first.

use crate::catalogue::{self, WorkloadKind};
use crate::model::{sa_project, Binding, Inventory, Target, TargetKind};
use crate::roles::{danger_of, Danger, RoleLookup};
use crate::source::Loc;
use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Limits: a graph this large is not one configuration's IAM; stop and say so.
pub const MAX_PATHS: usize = 10_000;
pub const MAX_PATH_LEN: usize = 16;
pub const MAX_EDGES: usize = 2_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Principal,
    /// Full control of an organization, folder or project (its IAM policy).
    Control,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Edge {
    /// Stable method id, e.g. `token-creator`, `actas-cloud-run`, `project-set-iam-policy`.
    pub method: String,
    pub permission: String,
    pub evidence: Vec<Loc>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub from: String,
    pub to: String,
    pub method: String,
    pub permission: String,
    pub evidence: Vec<Loc>,
    /// A binding of its evidence has an IAM condition that cannot be decided statically.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub conditional: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EscalationPath {
    pub from: String,
    pub to: String,
    pub self_escalation: bool,
    /// A step depends on an IAM condition: the path may exist, it is not certain.
    pub conditional: bool,
    /// When the source is a workload identity federation principal set: how wide it is
    /// (`crate::model::federation_width`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_width: Option<String>,
    pub steps: Vec<Step>,
}

impl EscalationPath {
    pub fn methods(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.method.clone()).collect()
    }
}

pub struct EscalationGraph {
    pub graph: DiGraph<Node, Edge>,
    index: HashMap<String, NodeIndex>,
    privileges: HashMap<String, BTreeSet<(String, String)>>,
    memberships: HashMap<String, Vec<String>>,
    /// Where the bindings whose condition is undecided are declared (steps citing them are
    /// conditional). By location: the instances of one `for_each` share it.
    conditional_locs: BTreeSet<Loc>,
    pub truncated: bool,
}

fn control_id(t: &Target) -> String {
    t.key()
}

const P: NodeKind = NodeKind::Principal;
const C: NodeKind = NodeKind::Control;

/// What the graph is built from, beyond the graph itself.
struct BuildCtx<'a> {
    inv: &'a Inventory,
    bindings: &'a [Binding],
    /// Workload identity federation principals, sorted and distinct.
    wif_members: Vec<String>,
}

/// One dangerous permission held through one binding.
#[derive(Clone, Copy)]
struct Grant<'a> {
    binding: &'a Binding,
    permission: &'a str,
    danger: Danger,
}

/// actAs and the catalogue's permissions per member: most methods need both, or a permission
/// and an existing workload, so they are joined once every binding has been read.
#[derive(Default)]
struct Deploy<'a> {
    /// Member → (service account it can act as, binding).
    actas: BTreeMap<String, Vec<(String, &'a Binding)>>,
    /// Member → (permission of the catalogue, binding).
    held: BTreeMap<String, Vec<(&'a str, &'a Binding)>>,
    /// Member → bindings that let it set organization policies.
    org_policy_admin: BTreeMap<String, Vec<&'a Binding>>,
    /// Key creation that an enforced constraint forbids: (binding, service account).
    guarded: Vec<(&'a Binding, String)>,
}

impl<'a> Deploy<'a> {
    /// The bindings through which `member` holds `permission`.
    fn holding<'s>(&'s self, member: &str, permission: &'s str) -> impl Iterator<Item = &'a Binding> + 's {
        let held = self.held.get(member).map(Vec::as_slice).unwrap_or_default();
        held.iter().filter(move |(p, _)| *p == permission).map(|(_, b)| *b)
    }
    /// The binding through which `member` can act as `sa`, if any.
    fn acts_as(&self, member: &str, sa: &str) -> Option<&'a Binding> {
        self.actas.get(member)?.iter().find(|(s, _)| s == sa).map(|(_, b)| *b)
    }
}

/// The projects under a target: itself, or every project beneath a folder or organization.
fn projects_under(inv: &Inventory, t: &Target) -> BTreeSet<String> {
    let mut projects: BTreeSet<String> = BTreeSet::new();
    match t.kind {
        TargetKind::Project => {
            projects.insert(t.id.clone());
        }
        TargetKind::Folder | TargetKind::Organization => {
            let mut containers = vec![t.clone()];
            let mut seen = BTreeSet::new();
            while let Some(ct) = containers.pop() {
                if !seen.insert(ct.clone()) || seen.len() > 10_000 {
                    continue;
                }
                for pp in inv.project_parents.iter().filter(|pp| pp.parent == ct) {
                    projects.insert(pp.project.clone());
                }
                for (f, parent) in &inv.folder_parents {
                    if *parent == ct {
                        containers.push(Target { kind: TargetKind::Folder, id: f.clone() });
                    }
                }
            }
        }
        TargetKind::ServiceAccount | TargetKind::Other => {}
    }
    projects
}

/// Whether a binding on `target` applies to a resource (its project, name and address).
fn covers(inv: &Inventory, target: &Target, project: &str, name: &str, address: &str) -> bool {
    match target.kind {
        TargetKind::Project => target.id == project,
        TargetKind::Folder | TargetKind::Organization => projects_under(inv, target).contains(project),
        TargetKind::Other => {
            let last = target.id.rsplit([':', '/']).next().unwrap_or_default();
            (!name.is_empty() && last == name) || target.id.ends_with(address)
        }
        TargetKind::ServiceAccount => false,
    }
}

/// The method of a danger that reaches the service accounts under the binding's resource.
fn service_account_method(danger: Danger) -> Option<&'static str> {
    Some(match danger {
        Danger::TokenCreation => "token-creator",
        Danger::SignBlob => "sign-blob",
        Danger::SignJwt => "sign-jwt",
        Danger::OpenIdToken => "openid-token",
        Danger::ImplicitDelegation => "implicit-delegation",
        Danger::KeyCreation => "key-creation",
        Danger::SetIamPolicySa => "sa-set-iam-policy",
        Danger::HmacKey => "hmac-key",
        Danger::DeploymentManager => "deployment-manager",
        _ => return None,
    })
}

/// Hierarchy: the service accounts of the projects under a target (or the account itself).
fn sas_under(inv: &Inventory, t: &Target) -> Vec<String> {
    if t.kind == TargetKind::ServiceAccount {
        return vec![t.id.clone()];
    }
    let projects = projects_under(inv, t);
    inv.service_accounts.iter().filter(|s| projects.contains(&s.project)).map(|s| s.email.clone()).collect()
}

/// Control ids of the projects, then the folders, directly under a folder or organization.
fn container_children(inv: &Inventory, target: &Target) -> Vec<String> {
    inv.project_parents
        .iter()
        .filter(|pp| pp.parent == *target)
        .map(|pp| format!("projects/{}", pp.project))
        .chain(inv.folder_parents.iter().filter(|(_, parent)| parent == target).map(|(f, _)| format!("folders/{f}")))
        .collect()
}

impl EscalationGraph {
    fn node(&mut self, id: &str, kind: NodeKind) -> NodeIndex {
        if let Some(i) = self.index.get(id) {
            return *i;
        }
        let i = self.graph.add_node(Node { id: id.to_string(), kind });
        self.index.insert(id.to_string(), i);
        i
    }

    fn edge(&mut self, from: &str, from_kind: NodeKind, to: &str, to_kind: NodeKind, e: Edge) {
        if from == to || self.graph.edge_count() >= MAX_EDGES {
            self.truncated |= self.graph.edge_count() >= MAX_EDGES;
            return;
        }
        let a = self.node(from, from_kind);
        let b = self.node(to, to_kind);
        // One edge per (from, to, method): keep the first evidence (bindings are sorted).
        if self.graph.edges_connecting(a, b).any(|x| x.weight().method == e.method) {
            return;
        }
        self.graph.add_edge(a, b, e);
    }

    /// Builds the graph from effective bindings (expired ones already removed). Edges are added
    /// in a fixed order (memberships, then per binding and permission, then actAs + workload,
    /// then control of containers): path search visits edges in insertion order.
    pub fn build(inv: &Inventory, bindings: &[Binding], roles: &dyn RoleLookup) -> EscalationGraph {
        let mut g = EscalationGraph {
            graph: DiGraph::new(),
            index: HashMap::new(),
            privileges: HashMap::new(),
            memberships: HashMap::new(),
            conditional_locs: bindings.iter().filter(|b| b.conditional).map(|b| b.loc.clone()).collect(),
            truncated: false,
        };
        g.add_privileges(bindings, roles);
        g.add_group_memberships(inv);
        let wif_members: BTreeSet<String> =
            bindings.iter().filter(|b| b.member.contains("workloadIdentityPools/")).map(|b| b.member.clone()).collect();
        let ctx = BuildCtx { inv, bindings, wif_members: wif_members.into_iter().collect() };
        let mut deploy = Deploy::default();
        for b in bindings {
            let Some(role) = roles.role(&b.role) else {
                continue;
            };
            for perm in &role.permissions {
                if denied(inv, b, perm) {
                    continue;
                }
                if let Some(danger) = danger_of(perm) {
                    g.add_danger(&ctx, Grant { binding: b, permission: perm, danger }, &mut deploy);
                }
            }
        }
        g.add_actas_workload(&deploy);
        g.add_default_identities(inv, bindings, &deploy);
        g.add_workload_updates(inv, &deploy);
        g.add_run_existing(inv, &deploy);
        g.add_instance_access(inv, &deploy);
        g.add_lifted_constraints(inv, &deploy);
        g.add_container_control(inv);
        g
    }

    /// Privileges per principal (for "more privileged than").
    fn add_privileges(&mut self, bindings: &[Binding], roles: &dyn RoleLookup) {
        for b in bindings {
            let perms = roles.role(&b.role).map(|r| r.permissions.clone()).unwrap_or_default();
            let entry = self.privileges.entry(b.member.clone()).or_default();
            if perms.is_empty() {
                entry.insert((format!("role:{}", b.role), b.target.key()));
            }
            for perm in perms {
                entry.insert((perm, b.target.key()));
            }
        }
    }

    fn add_group_memberships(&mut self, inv: &Inventory) {
        for m in &inv.group_memberships {
            self.memberships.entry(m.member.clone()).or_default().push(m.group.clone());
            let e = Edge {
                method: "group-membership".into(),
                permission: "(member of group)".into(),
                evidence: vec![m.loc.clone()],
            };
            self.edge(&m.member, P, &m.group, P, e);
        }
    }

    /// The edges one dangerous permission of one binding gives (actAs and workload creation
    /// are only remembered: they escalate together).
    fn add_danger<'a>(&mut self, ctx: &BuildCtx<'_>, grant: Grant<'a>, deploy: &mut Deploy<'a>) {
        let Grant { binding: b, permission: perm, danger } = grant;
        if let Some(method) = service_account_method(danger) {
            if matches!(danger, Danger::HmacKey | Danger::DeploymentManager) && !b.target.is_container() {
                return;
            }
            for sa in sas_under(ctx.inv, &b.target) {
                if danger == Danger::KeyCreation && key_creation_forbidden(ctx.inv, &sa) {
                    deploy.guarded.push((b, sa));
                    continue;
                }
                let e = Edge { method: method.into(), permission: perm.to_string(), evidence: vec![b.loc.clone()] };
                self.edge(&b.member, P, &format!("serviceAccount:{sa}"), P, e);
            }
            return;
        }
        match danger {
            Danger::SetIamPolicyProject | Danger::SetIamPolicyFolder | Danger::SetIamPolicyOrg => {
                self.add_set_iam_policy(b, perm)
            }
            Danger::RoleUpdate => self.add_role_update(ctx, b, perm),
            Danger::WorkloadIdentityProvider => {
                if !b.target.is_container() {
                    return;
                }
                for m in &ctx.wif_members {
                    let e = Edge {
                        method: "wif-provider-admin".into(),
                        permission: perm.to_string(),
                        evidence: vec![b.loc.clone()],
                    };
                    self.edge(&b.member, P, m, P, e);
                }
            }
            Danger::ActAs => {
                for sa in sas_under(ctx.inv, &b.target) {
                    deploy.actas.entry(b.member.clone()).or_default().push((sa, b));
                }
            }
            Danger::Workload => {
                if !self.add_resource_policy(b, perm) {
                    deploy.held.entry(b.member.clone()).or_default().push((perm, b));
                }
            }
            Danger::TokenCreation
            | Danger::SignBlob
            | Danger::SignJwt
            | Danger::OpenIdToken
            | Danger::ImplicitDelegation
            | Danger::KeyCreation
            | Danger::SetIamPolicySa
            | Danger::HmacKey
            | Danger::DeploymentManager => unreachable!("handled as a service account method"),
            Danger::OrgPolicySet => deploy.org_policy_admin.entry(b.member.clone()).or_default().push(b),
            Danger::ApiKey | Danger::SecretAccess => {}
        }
    }

    /// setIamPolicy on a container: control of it.
    fn add_set_iam_policy(&mut self, b: &Binding, perm: &str) {
        if !b.target.is_container() {
            return;
        }
        let method = match b.target.kind {
            TargetKind::Organization => "org-set-iam-policy",
            TargetKind::Folder => "folder-set-iam-policy",
            _ => "project-set-iam-policy",
        };
        let e = Edge { method: method.into(), permission: perm.to_string(), evidence: vec![b.loc.clone()] };
        self.edge(&b.member, P, &control_id(&b.target), C, e);
    }

    /// The holder is bound to a custom role it can rewrite: self-escalation.
    fn add_role_update(&mut self, ctx: &BuildCtx<'_>, b: &Binding, perm: &str) {
        if !b.target.is_container() {
            return;
        }
        let prefix = format!("{}/roles/", control_id(&b.target));
        for o in ctx.bindings.iter().filter(|o| o.member == b.member && o.role.starts_with(&prefix)) {
            let e = Edge {
                method: "custom-role-update".into(),
                permission: format!("{perm} on {}", o.role),
                evidence: vec![b.loc.clone(), o.loc.clone()],
            };
            self.edge(&b.member, P, &control_id(&o.target), C, e);
        }
    }

    /// setIamPolicy on a bucket, secret, topic or dataset (or on a container: every one of
    /// them beneath): control of it. False when `perm` is not such a permission.
    fn add_resource_policy(&mut self, b: &Binding, perm: &str) -> bool {
        let Some((_, method, noun)) = catalogue::RESOURCE_POLICIES.iter().find(|(p, _, _)| *p == perm) else {
            return false;
        };
        let control =
            if b.target.is_container() { format!("{} (every {noun})", b.target.key()) } else { b.target.key() };
        let e = Edge { method: method.to_string(), permission: perm.to_string(), evidence: vec![b.loc.clone()] };
        self.edge(&b.member, P, &control, C, e);
        true
    }

    /// Key creation an enforced constraint forbids becomes possible again for a member that
    /// can set organization policies where the constraint applies: it lifts it first.
    fn add_lifted_constraints(&mut self, inv: &Inventory, deploy: &Deploy<'_>) {
        for (b, sa) in &deploy.guarded {
            let project = sa_project(sa).unwrap_or_default();
            let admins = deploy.org_policy_admin.get(&b.member).map(Vec::as_slice).unwrap_or_default();
            let Some(admin) = admins.iter().find(|a| covers(inv, &a.target, &project, "", "")) else {
                continue;
            };
            let permission = format!("orgpolicy.policy.set (lifts {KEY_CONSTRAINT}) + iam.serviceAccountKeys.create");
            self.run_as(&b.member, sa, "org-policy-set", permission, vec![admin.loc.clone(), b.loc.clone()]);
        }
    }

    /// One "runs code as" edge from a member to a service account.
    fn run_as(&mut self, member: &str, sa: &str, method: &str, permission: String, evidence: Vec<Loc>) {
        let e = Edge { method: method.to_string(), permission, evidence };
        self.edge(member, P, &format!("serviceAccount:{sa}"), P, e);
    }

    /// actAs on S plus the creation of a workload that runs as S.
    fn add_actas_workload(&mut self, deploy: &Deploy<'_>) {
        for (member, sas) in &deploy.actas {
            let Some(held) = deploy.held.get(member) else {
                continue;
            };
            for (sa, ab) in sas {
                for (perm, wb) in held {
                    let Some(kind) = catalogue::created_by(perm) else {
                        continue;
                    };
                    let permission = format!("iam.serviceAccounts.actAs + {perm}");
                    let evidence = vec![ab.loc.clone(), wb.loc.clone()];
                    self.run_as(member, sa, &format!("actas-{}", kind.name), permission, evidence);
                }
            }
        }
    }

    /// Work submitted with no identity runs as the product's service agent, unchecked: the
    /// agent's roles in the project (as bound in the code) are the member's.
    fn add_default_identities(&mut self, inv: &Inventory, bindings: &[Binding], deploy: &Deploy<'_>) {
        for member in deploy.held.keys() {
            for (perm, suffix, method) in catalogue::DEFAULT_IDENTITIES {
                for b in deploy.holding(member, perm) {
                    let agents = bindings.iter().filter(|o| {
                        o.member.ends_with(suffix)
                            && o.target.kind == TargetKind::Project
                            && covers(inv, &b.target, &o.target.id, "", "")
                    });
                    for o in agents {
                        let agent = o.member.trim_start_matches("serviceAccount:");
                        let permission = format!("{perm} (runs as the service agent of {})", o.target.key());
                        self.run_as(member, agent, method, permission, vec![b.loc.clone(), o.loc.clone()]);
                    }
                }
            }
        }
    }

    /// Updating an existing workload: the identity it runs as when the product does not check
    /// actAs on update; any identity the member can act as when it does.
    fn add_workload_updates(&mut self, inv: &Inventory, deploy: &Deploy<'_>) {
        for (member, held) in &deploy.held {
            for (perm, b) in held {
                let Some(kind) = catalogue::WORKLOADS.iter().find(|k| k.update.contains(perm)) else {
                    continue;
                };
                for w in existing(inv, kind, b) {
                    let evidence = vec![b.loc.clone(), w.loc.clone()];
                    if !kind.update_checks_actas {
                        let permission = format!("{perm} ({})", w.address);
                        self.run_as(member, &w.service_account, kind.update_method, permission, evidence.clone());
                    }
                    for (sa, ab) in deploy.actas.get(member).map(Vec::as_slice).unwrap_or_default() {
                        let permission = format!("iam.serviceAccounts.actAs + {perm} ({})", w.address);
                        let mut evidence = evidence.clone();
                        evidence.push(ab.loc.clone());
                        self.run_as(member, sa, kind.update_method, permission, evidence);
                    }
                }
            }
        }
    }

    /// Running code in an existing workload as its identity, no actAs (a job submitted to a
    /// cluster, a job run with overrides, pods on a cluster's nodes): every permission of the
    /// kind's `run_existing`, each through a binding that covers the workload.
    fn add_run_existing(&mut self, inv: &Inventory, deploy: &Deploy<'_>) {
        for member in deploy.held.keys() {
            for kind in catalogue::WORKLOADS.iter().filter(|k| !k.run_existing.is_empty()) {
                for w in inv.workloads.iter().filter(|w| w.kind == kind.name && !w.concealed) {
                    let grants: Vec<&Binding> = kind
                        .run_existing
                        .iter()
                        .filter_map(|p| {
                            deploy.holding(member, p).find(|b| covers(inv, &b.target, &w.project, &w.name, &w.address))
                        })
                        .collect();
                    if grants.len() != kind.run_existing.len() {
                        continue;
                    }
                    let mut evidence: Vec<Loc> = grants.iter().map(|b| b.loc.clone()).collect();
                    evidence.push(w.loc.clone());
                    let permission = format!("{} ({})", kind.run_existing.join(" + "), w.address);
                    self.run_as(member, &w.service_account, kind.run_method, permission, evidence);
                }
            }
        }
    }

    /// Into a VM that runs as a service account: metadata (ssh keys, startup scripts), OS
    /// Login over an external address, or OS Login through IAP TCP forwarding.
    fn add_instance_access(&mut self, inv: &Inventory, deploy: &Deploy<'_>) {
        for member in deploy.held.keys() {
            for inst in &inv.instances {
                let covering = |perm: &'static str| {
                    deploy
                        .holding(member, perm)
                        .find(|b| covers(inv, &b.target, &inst.project, &inst.name, &inst.address))
                };
                let actas = deploy.acts_as(member, &inst.service_account);
                let iap = covering(catalogue::IAP_TUNNEL);
                for access in catalogue::INSTANCE_ACCESS {
                    let Some(b) = covering(access.permission) else {
                        continue;
                    };
                    let mut evidence = vec![b.loc.clone(), inst.loc.clone()];
                    let mut permission = format!("{} ({})", access.permission, inst.address);
                    if access.needs_actas {
                        let Some(ab) = actas else {
                            continue;
                        };
                        evidence.push(ab.loc.clone());
                        permission.push_str(" + iam.serviceAccounts.actAs");
                    }
                    let mut method = access.method;
                    if access.needs_external_ip && !inst.external_ip {
                        let Some(tunnel) = iap else {
                            continue;
                        };
                        evidence.push(tunnel.loc.clone());
                        permission.push_str(&format!(" + {}", catalogue::IAP_TUNNEL));
                        method = catalogue::IAP_METHOD;
                    }
                    self.run_as(member, &inst.service_account, method, permission, evidence);
                }
            }
        }
    }

    /// Control of a container: inheritance downwards, and every service account inside.
    fn add_container_control(&mut self, inv: &Inventory) {
        let controls: Vec<String> =
            self.graph.node_weights().filter(|n| n.kind == NodeKind::Control).map(|n| n.id.clone()).collect();
        let mut queue: VecDeque<String> = controls.into_iter().collect();
        let mut done = BTreeSet::new();
        while let Some(id) = queue.pop_front() {
            if !done.insert(id.clone()) || done.len() > 10_000 {
                continue;
            }
            let target = crate::model::parent_target(&id);
            if target.kind == TargetKind::Project {
                for s in inv.service_accounts.iter().filter(|s| s.project == target.id) {
                    let e = Edge {
                        method: "project-control".into(),
                        permission: "grant yourself roles/iam.serviceAccountTokenCreator".into(),
                        evidence: vec![s.loc.clone()],
                    };
                    self.edge(&id, C, &format!("serviceAccount:{}", s.email), P, e);
                }
                continue;
            }
            for child in container_children(inv, &target) {
                let e = Edge {
                    method: "inheritance".into(),
                    permission: "IAM policy inherited downwards".into(),
                    evidence: Vec::new(),
                };
                self.edge(&id, C, &child, C, e);
                queue.push_back(child);
            }
        }
    }

    /// Privileges of a principal including the groups it belongs to.
    fn effective_privileges(&self, member: &str) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        let mut stack = vec![member.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(m) = stack.pop() {
            if !seen.insert(m.clone()) || seen.len() > 1000 {
                continue;
            }
            if let Some(p) = self.privileges.get(&m) {
                out.extend(p.iter().cloned());
            }
            if let Some(groups) = self.memberships.get(&m) {
                stack.extend(groups.iter().cloned());
            }
        }
        out
    }

    /// BFS from `source` with parent edges, up to MAX_PATH_LEN steps: the nodes reached (in
    /// order of discovery) and the edge each was first reached by. Edges are visited in
    /// insertion order, so the witnesses are deterministic.
    fn reachable(&self, source: NodeIndex) -> (Vec<NodeIndex>, HashMap<NodeIndex, EdgeIndex>) {
        let mut parent: HashMap<NodeIndex, EdgeIndex> = HashMap::new();
        let mut depth: HashMap<NodeIndex, usize> = HashMap::new();
        depth.insert(source, 0);
        let mut queue = VecDeque::from([source]);
        let mut order = Vec::new();
        while let Some(n) = queue.pop_front() {
            let d = depth[&n];
            if d >= MAX_PATH_LEN {
                continue;
            }
            let mut edges: Vec<_> = self.graph.edges(n).collect();
            edges.sort_by_key(|e| e.id());
            for e in edges {
                let t = e.target();
                if depth.contains_key(&t) {
                    continue;
                }
                depth.insert(t, d + 1);
                parent.insert(t, e.id());
                queue.push_back(t);
                order.push(t);
            }
        }
        (order, parent)
    }

    /// The steps from the BFS source to `target`, following the parent edges back.
    fn witness(&self, parent: &HashMap<NodeIndex, EdgeIndex>, target: NodeIndex) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut cur = target;
        while let Some(eid) = parent.get(&cur) {
            let (a, b) = self.graph.edge_endpoints(*eid).unwrap_or((cur, cur));
            let w = &self.graph[*eid];
            steps.push(Step {
                from: self.graph[a].id.clone(),
                to: self.graph[b].id.clone(),
                method: w.method.clone(),
                permission: w.permission.clone(),
                evidence: w.evidence.clone(),
                conditional: w.evidence.iter().any(|l| self.conditional_locs.contains(l)),
            });
            cur = a;
        }
        steps.reverse();
        steps
    }

    /// Every escalation: shortest witness per (source, target), shortest first.
    pub fn paths(&mut self) -> Vec<EscalationPath> {
        let mut out = Vec::new();
        let mut sources: Vec<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|i| self.graph[*i].kind == NodeKind::Principal)
            .filter(|i| self.graph.edges(*i).next().is_some())
            .collect();
        sources.sort_by(|a, b| self.graph[*a].id.cmp(&self.graph[*b].id));
        'sources: for s in sources {
            let source_id = self.graph[s].id.clone();
            let own = self.effective_privileges(&source_id);
            let (order, parent) = self.reachable(s);
            for t in order {
                let node = &self.graph[t];
                let is_escalation = match node.kind {
                    NodeKind::Control => true,
                    NodeKind::Principal => {
                        let theirs = self.effective_privileges(&node.id);
                        !theirs.is_empty() && !theirs.is_subset(&own)
                    }
                };
                if !is_escalation {
                    continue;
                }
                let steps = self.witness(&parent, t);
                // Self-escalation: the principal itself (or a group it is in) takes control
                // of a container directly; reaching control through another identity is an
                // escalation path like any other.
                let first_own = steps.iter().find(|s| s.method != "group-membership");
                let self_escalation = node.kind == NodeKind::Control
                    && first_own.is_some_and(|s| {
                        self.index.get(&s.to).is_some_and(|i| self.graph[*i].kind == NodeKind::Control)
                    });
                let conditional = steps.iter().any(|s| s.conditional);
                out.push(EscalationPath {
                    from: source_id.clone(),
                    to: node.id.clone(),
                    self_escalation,
                    conditional,
                    source_width: None,
                    steps,
                });
                if out.len() >= MAX_PATHS {
                    self.truncated = true;
                    break 'sources;
                }
            }
        }
        out.sort_by(|a, b| (a.steps.len(), &a.from, &a.to).cmp(&(b.steps.len(), &b.from, &b.to)));
        out
    }

    fn dot_id(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    /// Graphviz DOT of the graph; nodes on an escalation path are highlighted.
    pub fn to_dot(&self, paths: &[EscalationPath]) -> String {
        let on_path: BTreeSet<&str> =
            paths.iter().flat_map(|p| p.steps.iter().flat_map(|s| [s.from.as_str(), s.to.as_str()])).collect();
        let mut out =
            String::from("digraph escalation {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n");
        for n in self.graph.node_weights() {
            let shape = if n.kind == NodeKind::Control { "octagon" } else { "box" };
            let color = if on_path.contains(n.id.as_str()) { "red" } else { "black" };
            out.push_str(&format!("  {} [shape={shape}, color={color}];\n", Self::dot_id(&n.id)));
        }
        for e in self.graph.edge_references() {
            let (a, b) = (&self.graph[e.source()].id, &self.graph[e.target()].id);
            let w = e.weight();
            let loc = w.evidence.first().map(|l| format!("\\n{l}")).unwrap_or_default();
            out.push_str(&format!(
                "  {} -> {} [label={}];\n",
                Self::dot_id(a),
                Self::dot_id(b),
                Self::dot_id(&format!("{}{loc}", w.method)).replace("\\\\n", "\\n")
            ));
        }
        out.push_str("}\n");
        out
    }

    /// Mermaid flowchart of the graph.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let id = |i: NodeIndex| format!("n{}", i.index());
        for i in self.graph.node_indices() {
            let n = &self.graph[i];
            let label = n.id.replace('"', "'");
            if n.kind == NodeKind::Control {
                out.push_str(&format!("  {}{{{{\"{label}\"}}}}\n", id(i)));
            } else {
                out.push_str(&format!("  {}[\"{label}\"]\n", id(i)));
            }
        }
        for e in self.graph.edge_references() {
            out.push_str(&format!("  {} -->|{}| {}\n", id(e.source()), e.weight().method, id(e.target())));
        }
        out
    }
}

/// The constraint that forbids service-account key creation.
const KEY_CONSTRAINT: &str = "iam.disableServiceAccountKeyCreation";

/// An enforced `iam.disableServiceAccountKeyCreation` in the code covers the account's project
/// (set on the project, a folder above it, or an organization).
fn key_creation_forbidden(inv: &Inventory, sa: &str) -> bool {
    let project = sa_project(sa).unwrap_or_default();
    inv.org_policies.iter().filter(|p| p.enforces && p.constraint == KEY_CONSTRAINT).any(|p| match p.parent.kind {
        TargetKind::Organization => true,
        _ => covers(inv, &p.parent, &project, "", ""),
    })
}

/// A deny policy in the code forbids the member this permission where the binding applies.
/// Deny rules with a condition are not relied on (the path stays reported). An organization's
/// deny rule covers everything analyzed; a folder's, the projects under it; a project's, the
/// project and its service accounts.
fn denied(inv: &Inventory, b: &Binding, perm: &str) -> bool {
    inv.deny_rules.iter().filter(|d| !d.conditional && d.denies(&b.member, perm)).any(|d| match d.parent.kind {
        TargetKind::Organization => true,
        TargetKind::Folder => {
            let projects = projects_under(inv, &d.parent);
            match b.target.kind {
                TargetKind::ServiceAccount => sa_project(&b.target.id).is_some_and(|p| projects.contains(&p)),
                TargetKind::Project => projects.contains(&b.target.id),
                _ => b.target == d.parent,
            }
        }
        TargetKind::Project => match b.target.kind {
            TargetKind::ServiceAccount => sa_project(&b.target.id).as_deref() == Some(d.parent.id.as_str()),
            _ => b.target == d.parent,
        },
        TargetKind::ServiceAccount | TargetKind::Other => b.target == d.parent,
    })
}

/// The existing workloads of a kind that a binding covers.
fn existing<'i>(
    inv: &'i Inventory,
    kind: &WorkloadKind,
    b: &Binding,
) -> impl Iterator<Item = &'i crate::model::Workload> {
    let (name, target) = (kind.name, b.target.clone());
    inv.workloads.iter().filter(move |w| w.kind == name && covers(inv, &target, &w.project, &w.name, &w.address))
}

/// Whether an email belongs to a given project (used by callers reporting on SAs).
pub fn sa_in_project(email: &str, project: &str) -> bool {
    sa_project(email).as_deref() == Some(project)
}
