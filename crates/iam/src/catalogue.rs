//! The catalogue of escalation methods that run code as an attached identity, as tables: the
//! managed services that run a workload as a service account (create, update, run the
//! existing one), the ways into a VM that runs as one, and the resource-level IAM policies a
//! principal can rewrite. The graph reads these tables; adding a service is adding a row.
//! Method ids are stable (`expected.json` of the fixtures and exceptions' messages use them).
//!
//! Facts (permission names, which product checks `iam.serviceAccounts.actAs` when an existing
//! workload is changed) are from Google's IAM documentation and the public escalation
//! literature (Rhino Security Labs' GCP privilege-escalation research and its follow-ups).

/// A managed service that runs code as an attached service account.
pub struct WorkloadKind {
    /// Product name in method ids: `actas-<name>` for creation.
    pub name: &'static str,
    /// Resources that declare such a workload, each with the attribute path of its identity
    /// (nested blocks are followed through their first element).
    pub resources: &'static [(&'static str, &'static [&'static str])],
    /// Creating one: with actAs on S, runs code as S.
    pub create: &'static [&'static str],
    /// Updating an existing one, and the method id.
    pub update: &'static [&'static str],
    pub update_method: &'static str,
    /// The product checks actAs on the identity when an existing workload is updated: the
    /// update reaches only identities the principal can act as. When it does not, updating
    /// reaches the identity the workload already runs as.
    pub update_checks_actas: bool,
    /// Permissions that, all held, run code as the existing workload's identity with no
    /// actAs (e.g. submitting a job to a cluster), and the method id.
    pub run_existing: &'static [&'static str],
    pub run_method: &'static str,
    /// An attribute whose presence hides the identity from code run by `run_existing`
    /// (GKE Workload Identity hides the node identity from pods).
    pub concealed_by: &'static [&'static str],
}

const NONE: &[&str] = &[];

const fn kind(name: &'static str, resources: &'static [(&'static str, &'static [&'static str])]) -> WorkloadKind {
    WorkloadKind {
        name,
        resources,
        create: NONE,
        update: NONE,
        update_method: "",
        update_checks_actas: true,
        run_existing: NONE,
        run_method: "",
        concealed_by: NONE,
    }
}

/// The workload kinds. Order is the order edges are added (deterministic witnesses).
pub const WORKLOADS: &[WorkloadKind] = &[
    WorkloadKind {
        create: &["compute.instances.create"],
        update: &["compute.instances.setServiceAccount"],
        update_method: "set-service-account",
        ..kind("compute", &[("google_compute_instance", &["service_account", "email"])])
    },
    WorkloadKind {
        create: &["compute.instanceTemplates.create"],
        ..kind(
            "instance-template",
            &[
                ("google_compute_instance_template", &["service_account", "email"]),
                ("google_compute_region_instance_template", &["service_account", "email"]),
            ],
        )
    },
    WorkloadKind {
        create: &["run.services.create"],
        update: &["run.services.update"],
        update_method: "update-cloud-run",
        ..kind(
            "cloud-run",
            &[
                ("google_cloud_run_v2_service", &["template", "service_account"]),
                ("google_cloud_run_service", &["template", "spec", "service_account_name"]),
            ],
        )
    },
    WorkloadKind {
        create: &["run.jobs.create"],
        update: &["run.jobs.update"],
        update_method: "update-cloud-run-job",
        run_existing: &["run.jobs.runWithOverrides"],
        run_method: "run-cloud-run-job",
        ..kind("cloud-run-job", &[("google_cloud_run_v2_job", &["template", "template", "service_account"])])
    },
    WorkloadKind {
        create: &["cloudfunctions.functions.create"],
        update: &["cloudfunctions.functions.update"],
        update_method: "update-cloud-functions",
        ..kind(
            "cloud-functions",
            &[
                ("google_cloudfunctions_function", &["service_account_email"]),
                ("google_cloudfunctions2_function", &["service_config", "service_account_email"]),
            ],
        )
    },
    WorkloadKind {
        create: &["cloudscheduler.jobs.create"],
        update: &["cloudscheduler.jobs.update"],
        update_method: "update-cloud-scheduler",
        ..kind(
            "cloud-scheduler",
            &[
                ("google_cloud_scheduler_job", &["http_target", "oidc_token", "service_account_email"]),
                ("google_cloud_scheduler_job", &["http_target", "oauth_token", "service_account_email"]),
            ],
        )
    },
    WorkloadKind {
        create: &["workflows.workflows.create"],
        update: &["workflows.workflows.update"],
        update_method: "update-workflows",
        ..kind("workflows", &[("google_workflows_workflow", &["service_account"])])
    },
    WorkloadKind {
        create: &["eventarc.triggers.create"],
        update: &["eventarc.triggers.update"],
        update_method: "update-eventarc",
        ..kind("eventarc", &[("google_eventarc_trigger", &["service_account"])])
    },
    WorkloadKind { create: &["cloudbuild.builds.create"], ..kind("cloud-build", &[]) },
    WorkloadKind {
        create: &["cloudbuild.triggers.create"],
        update: &["cloudbuild.triggers.update"],
        update_method: "update-cloud-build-trigger",
        ..kind("cloud-build-trigger", &[("google_cloudbuild_trigger", &["service_account"])])
    },
    // Composer runs the DAGs and PyPI packages of an environment as its node identity; an
    // environment update is not checked against actAs.
    WorkloadKind {
        create: &["composer.environments.create"],
        update: &["composer.environments.update"],
        update_method: "update-composer",
        update_checks_actas: false,
        ..kind("composer", &[("google_composer_environment", &["config", "node_config", "service_account"])])
    },
    WorkloadKind {
        create: &["dataflow.jobs.create"],
        update: &["dataflow.jobs.update"],
        update_method: "update-dataflow",
        ..kind(
            "dataflow",
            &[
                ("google_dataflow_job", &["service_account_email"]),
                ("google_dataflow_flex_template_job", &["service_account_email"]),
            ],
        )
    },
    // A job submitted to an existing cluster runs as the cluster's identity, no actAs.
    WorkloadKind {
        create: &["dataproc.clusters.create"],
        run_existing: &["dataproc.jobs.create"],
        run_method: "dataproc-job-submit",
        ..kind("dataproc", &[("google_dataproc_cluster", &["cluster_config", "gce_cluster_config", "service_account"])])
    },
    WorkloadKind {
        create: &["notebooks.instances.create"],
        update: &["notebooks.instances.update"],
        update_method: "update-notebooks",
        ..kind(
            "notebooks",
            &[
                ("google_notebooks_instance", &["service_account"]),
                ("google_workbench_instance", &["gce_setup", "service_accounts", "email"]),
            ],
        )
    },
    WorkloadKind { create: &["aiplatform.customJobs.create"], ..kind("vertex-ai", &[]) },
    // Cluster credentials plus pod creation reach the node identity through the metadata
    // server, unless Workload Identity hides it.
    WorkloadKind {
        create: &["container.clusters.create"],
        run_existing: &["container.clusters.getCredentials", "container.pods.create"],
        run_method: "gke-node-identity",
        concealed_by: &["workload_identity_config"],
        ..kind(
            "gke",
            &[
                ("google_container_cluster", &["node_config", "service_account"]),
                ("google_container_node_pool", &["node_config", "service_account"]),
            ],
        )
    },
];

/// A way into a VM that runs as a service account.
pub struct InstanceAccess {
    pub permission: &'static str,
    pub method: &'static str,
    /// OS Login to a VM with an attached identity is checked against actAs on it.
    pub needs_actas: bool,
    /// Reached over the VM's external address (else through IAP TCP forwarding).
    pub needs_external_ip: bool,
}

pub const INSTANCE_ACCESS: &[InstanceAccess] = &[
    InstanceAccess {
        permission: "compute.instances.setMetadata",
        method: "instance-metadata",
        needs_actas: false,
        needs_external_ip: false,
    },
    InstanceAccess {
        permission: "compute.projects.setCommonInstanceMetadata",
        method: "common-instance-metadata",
        needs_actas: false,
        needs_external_ip: false,
    },
    InstanceAccess {
        permission: "compute.instances.osLogin",
        method: "os-login",
        needs_actas: true,
        needs_external_ip: true,
    },
    InstanceAccess {
        permission: "compute.instances.osAdminLogin",
        method: "os-admin-login",
        needs_actas: true,
        needs_external_ip: true,
    },
];

/// IAP TCP forwarding: with an OS Login permission, reaches a VM that has no external address.
pub const IAP_TUNNEL: &str = "iap.tunnelInstances.accessViaIAP";
pub const IAP_METHOD: &str = "iap-tunnel";

/// setIamPolicy on a resource below a project: control of that resource (or of every such
/// resource of a project, folder or organization the binding is on).
pub const RESOURCE_POLICIES: &[(&str, &str, &str)] = &[
    ("storage.buckets.setIamPolicy", "bucket-set-iam-policy", "bucket"),
    ("secretmanager.secrets.setIamPolicy", "secret-set-iam-policy", "secret"),
    ("pubsub.topics.setIamPolicy", "topic-set-iam-policy", "topic"),
    ("bigquery.datasets.setIamPolicy", "dataset-set-iam-policy", "dataset"),
];

/// A service agent a product runs work as when no identity is given, without an actAs check
/// (the legacy Cloud Build service account, `NUMBER@cloudbuild.gserviceaccount.com`): the
/// permission, the agent's email suffix, the method id.
pub const DEFAULT_IDENTITIES: &[(&str, &str, &str)] =
    &[("cloudbuild.builds.create", "@cloudbuild.gserviceaccount.com", "cloud-build-default-identity")];

/// Steps that connect methods rather than being one: they need no fixture of their own.
pub const STRUCTURAL_STEPS: &[&str] = &["inheritance", "project-control", "group-membership"];

/// Every permission the tables above make dangerous.
pub fn is_catalogued(permission: &str) -> bool {
    WORKLOADS.iter().any(|k| {
        k.create.contains(&permission) || k.update.contains(&permission) || k.run_existing.contains(&permission)
    }) || INSTANCE_ACCESS.iter().any(|a| a.permission == permission)
        || permission == IAP_TUNNEL
        || RESOURCE_POLICIES.iter().any(|(p, _, _)| *p == permission)
}

/// The workload kind a creation permission deploys.
pub fn created_by(permission: &str) -> Option<&'static WorkloadKind> {
    WORKLOADS.iter().find(|k| k.create.contains(&permission))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn method_ids_are_distinct_and_tables_consistent() {
        let mut ids = BTreeSet::new();
        for k in WORKLOADS {
            assert!(ids.insert(format!("actas-{}", k.name)), "{}", k.name);
            assert_eq!(k.update.is_empty(), k.update_method.is_empty(), "{}", k.name);
            assert_eq!(k.run_existing.is_empty(), k.run_method.is_empty(), "{}", k.name);
            for m in [k.update_method, k.run_method].into_iter().filter(|m| !m.is_empty()) {
                assert!(ids.insert(m.to_string()), "{m}");
            }
            assert!(!k.run_existing.is_empty() || k.concealed_by.is_empty(), "{}", k.name);
        }
        for a in INSTANCE_ACCESS {
            assert!(ids.insert(a.method.to_string()), "{}", a.method);
        }
        for (_, m, _) in RESOURCE_POLICIES {
            assert!(ids.insert(m.to_string()), "{m}");
        }
        assert!(ids.insert(IAP_METHOD.to_string()));
        for (_, _, m) in DEFAULT_IDENTITIES {
            assert!(ids.insert(m.to_string()), "{m}");
        }
        assert!(is_catalogued("run.jobs.runWithOverrides") && !is_catalogued("run.routes.invoke"));
        assert_eq!(created_by("run.jobs.create").map(|k| k.name), Some("cloud-run-job"));
    }
}
