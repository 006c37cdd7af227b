//! The escalation graph (petgraph): nodes are principals and "control of" resources
//! (organizations, folders, projects); an edge says "can act as / can gain", labelled with the
//! method, the permission and the binding(s) (file:line) that grant it. Paths from a principal
//! to a more privileged principal, or to control of a resource (self-escalation), are listed
//! shortest witness first.

use crate::model::{sa_project, Binding, Inventory, Target, TargetKind};
use crate::roles::{danger_of, workload_name, Danger, RoleLookup};
use crate::source::Loc;
use petgraph::graph::{DiGraph, NodeIndex};
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
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EscalationPath {
    pub from: String,
    pub to: String,
    pub self_escalation: bool,
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
    pub truncated: bool,
}

fn control_id(t: &Target) -> String {
    t.key()
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

    /// Builds the graph from effective bindings (expired ones already removed).
    pub fn build(inv: &Inventory, bindings: &[Binding], roles: &dyn RoleLookup) -> EscalationGraph {
        let mut g = EscalationGraph {
            graph: DiGraph::new(),
            index: HashMap::new(),
            privileges: HashMap::new(),
            memberships: HashMap::new(),
            truncated: false,
        };
        let p = NodeKind::Principal;
        let c = NodeKind::Control;

        // Hierarchy: which projects (and their service accounts) sit under which container.
        let sas_under = |t: &Target| -> Vec<String> {
            let mut projects: BTreeSet<String> = BTreeSet::new();
            match t.kind {
                TargetKind::ServiceAccount => return vec![t.id.clone()],
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
                        for pp in &inv.project_parents {
                            if pp.parent == ct {
                                projects.insert(pp.project.clone());
                            }
                        }
                        for (f, parent) in &inv.folder_parents {
                            if *parent == ct {
                                containers.push(Target { kind: TargetKind::Folder, id: f.clone() });
                            }
                        }
                    }
                }
                TargetKind::Other => return Vec::new(),
            }
            inv.service_accounts.iter().filter(|s| projects.contains(&s.project)).map(|s| s.email.clone()).collect()
        };

        // Privileges per principal (for "more privileged than").
        for b in bindings {
            let perms = roles.role(&b.role).map(|r| r.permissions.clone()).unwrap_or_default();
            let entry = g.privileges.entry(b.member.clone()).or_default();
            if perms.is_empty() {
                entry.insert((format!("role:{}", b.role), b.target.key()));
            }
            for perm in perms {
                entry.insert((perm, b.target.key()));
            }
        }
        for m in &inv.group_memberships {
            g.memberships.entry(m.member.clone()).or_default().push(m.group.clone());
            g.edge(
                &m.member,
                p,
                &m.group,
                p,
                Edge {
                    method: "group-membership".into(),
                    permission: "(member of group)".into(),
                    evidence: vec![m.loc.clone()],
                },
            );
        }

        let mut actas: BTreeMap<String, Vec<(String, &Binding)>> = BTreeMap::new();
        let mut workloads: BTreeMap<String, Vec<(String, &Binding)>> = BTreeMap::new();
        let wif_members: Vec<String> = {
            let set: BTreeSet<String> = bindings
                .iter()
                .filter(|b| b.member.contains("workloadIdentityPools/"))
                .map(|b| b.member.clone())
                .collect();
            set.into_iter().collect()
        };

        for b in bindings {
            let Some(role) = roles.role(&b.role) else {
                continue;
            };
            let ev = vec![b.loc.clone()];
            for perm in &role.permissions {
                let Some(danger) = danger_of(perm) else {
                    continue;
                };
                let method = match danger {
                    Danger::TokenCreation => "token-creator",
                    Danger::SignBlob => "sign-blob",
                    Danger::SignJwt => "sign-jwt",
                    Danger::OpenIdToken => "openid-token",
                    Danger::ImplicitDelegation => "implicit-delegation",
                    Danger::KeyCreation => "key-creation",
                    Danger::SetIamPolicySa => "sa-set-iam-policy",
                    Danger::HmacKey => "hmac-key",
                    Danger::DeploymentManager => "deployment-manager",
                    _ => "",
                };
                match danger {
                    Danger::TokenCreation
                    | Danger::SignBlob
                    | Danger::SignJwt
                    | Danger::OpenIdToken
                    | Danger::ImplicitDelegation
                    | Danger::KeyCreation
                    | Danger::SetIamPolicySa
                    | Danger::HmacKey
                    | Danger::DeploymentManager => {
                        if matches!(danger, Danger::HmacKey | Danger::DeploymentManager) && !b.target.is_container() {
                            continue;
                        }
                        for sa in sas_under(&b.target) {
                            g.edge(
                                &b.member,
                                p,
                                &format!("serviceAccount:{sa}"),
                                p,
                                Edge { method: method.into(), permission: perm.clone(), evidence: ev.clone() },
                            );
                        }
                    }
                    Danger::SetIamPolicyProject | Danger::SetIamPolicyFolder | Danger::SetIamPolicyOrg => {
                        if !b.target.is_container() {
                            continue;
                        }
                        let method = match b.target.kind {
                            TargetKind::Organization => "org-set-iam-policy",
                            TargetKind::Folder => "folder-set-iam-policy",
                            _ => "project-set-iam-policy",
                        };
                        g.edge(
                            &b.member,
                            p,
                            &control_id(&b.target),
                            c,
                            Edge { method: method.into(), permission: perm.clone(), evidence: ev.clone() },
                        );
                    }
                    Danger::RoleUpdate => {
                        if !b.target.is_container() {
                            continue;
                        }
                        let prefix = format!("{}/roles/", control_id(&b.target));
                        // The holder is bound to a custom role it can rewrite: self-escalation.
                        let own: Vec<&Binding> =
                            bindings.iter().filter(|o| o.member == b.member && o.role.starts_with(&prefix)).collect();
                        for o in own {
                            g.edge(
                                &b.member,
                                p,
                                &control_id(&o.target),
                                c,
                                Edge {
                                    method: "custom-role-update".into(),
                                    permission: format!("{perm} on {}", o.role),
                                    evidence: vec![b.loc.clone(), o.loc.clone()],
                                },
                            );
                        }
                    }
                    Danger::WorkloadIdentityProvider => {
                        if !b.target.is_container() {
                            continue;
                        }
                        for m in &wif_members {
                            g.edge(
                                &b.member,
                                p,
                                m,
                                p,
                                Edge {
                                    method: "wif-provider-admin".into(),
                                    permission: perm.clone(),
                                    evidence: ev.clone(),
                                },
                            );
                        }
                    }
                    Danger::InstanceMetadata => {
                        for inst in &inv.instances {
                            let covers = match b.target.kind {
                                TargetKind::Project => inst.project == b.target.id,
                                TargetKind::Other => b.target.id.ends_with(&inst.address),
                                _ => sas_under(&b.target).contains(&inst.service_account),
                            };
                            if covers {
                                g.edge(
                                    &b.member,
                                    p,
                                    &format!("serviceAccount:{}", inst.service_account),
                                    p,
                                    Edge {
                                        method: "instance-metadata".into(),
                                        permission: format!("{perm} ({})", inst.address),
                                        evidence: vec![b.loc.clone(), inst.loc.clone()],
                                    },
                                );
                            }
                        }
                    }
                    Danger::ActAs => {
                        for sa in sas_under(&b.target) {
                            actas.entry(b.member.clone()).or_default().push((sa, b));
                        }
                    }
                    Danger::Workload => {
                        workloads.entry(b.member.clone()).or_default().push((perm.clone(), b));
                    }
                    Danger::OrgPolicySet | Danger::ApiKey | Danger::SecretAccess => {}
                }
            }
        }
        // actAs on S plus a workload it can deploy → can run code as S.
        for (member, sas) in &actas {
            let Some(deploys) = workloads.get(member) else {
                continue;
            };
            for (sa, ab) in sas {
                for (perm, wb) in deploys {
                    g.edge(
                        member,
                        p,
                        &format!("serviceAccount:{sa}"),
                        p,
                        Edge {
                            method: format!("actas-{}", workload_name(perm)),
                            permission: format!("iam.serviceAccounts.actAs + {perm}"),
                            evidence: vec![ab.loc.clone(), wb.loc.clone()],
                        },
                    );
                }
            }
        }
        // Control of a container: inheritance downwards, and every service account inside.
        let controls: Vec<String> =
            g.graph.node_weights().filter(|n| n.kind == NodeKind::Control).map(|n| n.id.clone()).collect();
        let mut queue: VecDeque<String> = controls.into_iter().collect();
        let mut done = BTreeSet::new();
        while let Some(id) = queue.pop_front() {
            if !done.insert(id.clone()) || done.len() > 10_000 {
                continue;
            }
            let target = crate::model::parent_target(&id);
            match target.kind {
                TargetKind::Project => {
                    for s in inv.service_accounts.iter().filter(|s| s.project == target.id) {
                        g.edge(
                            &id,
                            c,
                            &format!("serviceAccount:{}", s.email),
                            p,
                            Edge {
                                method: "project-control".into(),
                                permission: "grant yourself roles/iam.serviceAccountTokenCreator".into(),
                                evidence: vec![s.loc.clone()],
                            },
                        );
                    }
                }
                _ => {
                    let children: Vec<String> = inv
                        .project_parents
                        .iter()
                        .filter(|pp| pp.parent == target)
                        .map(|pp| format!("projects/{}", pp.project))
                        .chain(
                            inv.folder_parents
                                .iter()
                                .filter(|(_, parent)| *parent == target)
                                .map(|(f, _)| format!("folders/{f}")),
                        )
                        .collect();
                    for child in children {
                        g.edge(
                            &id,
                            c,
                            &child,
                            c,
                            Edge {
                                method: "inheritance".into(),
                                permission: "IAM policy inherited downwards".into(),
                                evidence: Vec::new(),
                            },
                        );
                        queue.push_back(child);
                    }
                }
            }
        }
        g
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
            // BFS with parent edges; edges visited in insertion order (deterministic).
            let mut parent: HashMap<NodeIndex, petgraph::graph::EdgeIndex> = HashMap::new();
            let mut depth: HashMap<NodeIndex, usize> = HashMap::new();
            depth.insert(s, 0);
            let mut queue = VecDeque::from([s]);
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
                let mut steps = Vec::new();
                let mut cur = t;
                while let Some(eid) = parent.get(&cur) {
                    let (a, b) = self.graph.edge_endpoints(*eid).unwrap_or((cur, cur));
                    let w = &self.graph[*eid];
                    steps.push(Step {
                        from: self.graph[a].id.clone(),
                        to: self.graph[b].id.clone(),
                        method: w.method.clone(),
                        permission: w.permission.clone(),
                        evidence: w.evidence.clone(),
                    });
                    cur = a;
                }
                steps.reverse();
                // Self-escalation: the principal itself (or a group it is in) takes control
                // of a container directly; reaching control through another identity is an
                // escalation path like any other.
                let first_own = steps.iter().find(|s| s.method != "group-membership");
                let self_escalation = node.kind == NodeKind::Control
                    && first_own.is_some_and(|s| {
                        self.index.get(&s.to).is_some_and(|i| self.graph[*i].kind == NodeKind::Control)
                    });
                out.push(EscalationPath { from: source_id.clone(), to: node.id.clone(), self_escalation, steps });
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

/// Whether an email belongs to a given project (used by callers reporting on SAs).
pub fn sa_in_project(email: &str, project: &str) -> bool {
    sa_project(email).as_deref() == Some(project)
}
