//! Who may call what: Cedar policies over the caller (an API key with its tenant and roles),
//! the action (the API method, in one of the groups `read`, `work`, `operate`, `admin`) and
//! the resource (an execution with its tenant, workflow and labels, a tenant, or the store).
//!
//! The built-in policies give the roles their meaning and keep tenants apart; an operator adds
//! conditions with a policy file of their own (`omium serve --authorization FILE`): a `forbid`
//! there narrows what the roles allow, a `permit` widens it. See docs/security.md.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression,
};

use crate::error::{Error, Result};

/// The roles and the tenant wall. `@id` names what a denial is explained by.
pub const BUILT_IN: &str = r#"
@id("readers")
permit(principal in Omium::Role::"reader", action in Omium::Action::"read", resource);

@id("workers")
permit(principal in Omium::Role::"worker",
       action in [Omium::Action::"read", Omium::Action::"work"], resource);

@id("operators")
permit(principal in Omium::Role::"operator",
       action in [Omium::Action::"read", Omium::Action::"operate"], resource);

@id("admins")
permit(principal in Omium::Role::"admin", action, resource);

// A key of one tenant sees nothing of another's: the daemon answers "not found".
@id("tenant-isolation")
forbid(principal, action, resource)
when { principal.tenant != "*" && resource has tenant && resource.tenant != principal.tenant };

// The store as a whole (its audit chain, keys, every tenant's figures) is for keys of all
// tenants.
@id("store-wide")
forbid(principal, action, resource is Omium::Store) when { principal.tenant != "*" };
"#;

/// The group of every API method; a method not listed is no operation anybody may call.
pub const METHODS: &[(&str, &str)] = &[
    ("execution", "read"),
    ("executions", "read"),
    ("resumable", "read"),
    ("execution_input", "read"),
    ("execution_output", "read"),
    ("history", "read"),
    ("checkpoints", "read"),
    ("branch", "read"),
    ("checkpoint", "read"),
    ("read_state", "read"),
    ("verify", "read"),
    ("audit_head", "read"),
    ("stats", "read"),
    ("failures", "read"),
    ("recovery_metrics", "read"),
    ("metrics", "read"),
    ("policy_versions", "read"),
    ("policy_version", "read"),
    ("policy_defaults", "read"),
    ("spans", "read"),
    ("agent_graph", "read"),
    ("events", "read"),
    ("alerts", "read"),
    ("status", "read"),
    ("prometheus", "read"),
    ("executions.page", "read"),
    ("audit", "read"),
    ("report", "read"),
    ("policy.validate", "read"),
    ("whoami", "read"),
    ("cluster", "read"),
    ("begin", "work"),
    ("upload", "work"),
    ("run", "work"),
    ("start_recovery", "work"),
    ("recovery", "work"),
    ("record_spans", "work"),
    ("flush_spans", "read"),
    ("record_crash", "work"),
    ("rollback", "work"),
    ("fork", "operate"),
    ("resume", "operate"),
    ("control", "operate"),
    ("alerts.ack", "operate"),
    ("apply_policy", "operate"),
    ("delete_execution", "admin"),
    ("control.delete", "admin"),
    ("keys.create", "admin"),
    ("keys.list", "admin"),
    ("keys.revoke", "admin"),
];

/// The action a method is authorized as: `run.record` is `run`, `recovery.done` is
/// `recovery`, a `control` that deletes is `control.delete`.
pub fn action_of(method: &str) -> &str {
    match method.split_once('.') {
        Some((family @ ("run" | "recovery"), _)) => family,
        _ => method,
    }
}

/// Who calls.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The key's id, or `unix:UID` / `loopback` for callers without one.
    pub id: String,
    /// What the audit log records as the actor (`key:NAME`, `unix:1000`, `loopback`).
    pub actor: String,
    /// `*` for every tenant.
    pub tenant: String,
    pub roles: Vec<String>,
}

impl Caller {
    /// A caller the daemon trusts without a key: on the unix socket (the file's permissions
    /// chose who connects) or on loopback when no key exists.
    pub fn trusted(actor: String) -> Caller {
        Caller {
            id: actor.clone(),
            actor,
            tenant: omium_engine::keys::ALL_TENANTS.into(),
            roles: vec!["admin".into()],
        }
    }

    pub fn of_key(k: &omium_engine::keys::ApiKey) -> Caller {
        Caller {
            id: k.id.clone(),
            actor: format!("key:{}", k.name),
            tenant: k.tenant.clone(),
            roles: k.roles.clone(),
        }
    }

    /// Whether it may see every tenant.
    pub fn all_tenants(&self) -> bool {
        self.tenant == omium_engine::keys::ALL_TENANTS
    }
}

/// What a call touches.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// The store as a whole.
    Store,
    /// A tenant's part of it (new executions, its policies, its lists).
    Tenant(String),
    /// One execution.
    Execution {
        id: String,
        tenant: String,
        workflow: String,
        labels: BTreeMap<String, String>,
    },
}

impl Target {
    /// The audit log's name of it.
    pub fn resource(&self) -> String {
        match self {
            Target::Store => "store".into(),
            Target::Tenant(t) => format!("tenant/{t}"),
            Target::Execution { id, .. } => format!("execution/{id}"),
        }
    }
}

/// What the policies decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Allow,
    /// Another tenant's: answered as if it did not exist.
    Hidden,
    /// Not allowed, and why (for the caller and the audit log).
    Denied(String),
}

/// The policies, parsed once.
pub struct Authz {
    policies: PolicySet,
    authorizer: Authorizer,
}

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(ty).expect("our entity types parse"),
        EntityId::new(id),
    )
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_string())
}

impl Authz {
    /// The built-in policies, and the operator's (`text` from `file`) if given.
    pub fn new(extra: Option<(&str, &str)>) -> Result<Authz> {
        let mut policies = PolicySet::from_str(BUILT_IN).expect("the built-in policies parse");
        if let Some((text, file)) = extra {
            let theirs = PolicySet::from_str(text).map_err(|e| Error::InvalidArgument {
                what: "authorization policy",
                detail: located(text, file, &e),
            })?;
            for (n, p) in theirs.policies().enumerate() {
                let named = p.new_id(PolicyId::new(format!("{file}#{n}")));
                policies.add(named).map_err(|e| Error::InvalidArgument {
                    what: "authorization policy",
                    detail: format!("{file}: {e}"),
                })?;
            }
        }
        Ok(Authz {
            policies,
            authorizer: Authorizer::new(),
        })
    }

    /// May `caller` do `action` (see [`action_of`]) to `target`?
    pub fn check(&self, caller: &Caller, action: &str, target: &Target) -> Verdict {
        if !METHODS.iter().any(|(m, _)| *m == action) {
            return Verdict::Denied(format!("{action:?} is no operation of this API"));
        }
        let principal = uid("Omium::Key", &caller.id);
        let roles: HashSet<EntityUid> =
            caller.roles.iter().map(|r| uid("Omium::Role", r)).collect();
        let mut entities: Vec<Entity> = roles
            .iter()
            .map(|r| Entity::new_no_attrs(r.clone(), HashSet::new()))
            .collect();
        let key_attrs = HashMap::from([
            ("tenant".to_string(), string(&caller.tenant)),
            ("actor".to_string(), string(&caller.actor)),
        ]);
        entities.push(Entity::new(principal.clone(), key_attrs, roles).expect("plain strings"));
        let (resource, attrs) = match target {
            Target::Store => (uid("Omium::Store", "store"), HashMap::new()),
            Target::Tenant(t) => (
                uid("Omium::Tenant", t),
                HashMap::from([("tenant".to_string(), string(t))]),
            ),
            Target::Execution {
                id,
                tenant,
                workflow,
                labels,
            } => (
                uid("Omium::Execution", id),
                HashMap::from([
                    ("tenant".to_string(), string(tenant)),
                    ("workflow".to_string(), string(workflow)),
                    (
                        "labels".to_string(),
                        RestrictedExpression::new_record(
                            labels.iter().map(|(k, v)| (k.clone(), string(v))),
                        )
                        .expect("a map has no duplicate keys"),
                    ),
                ]),
            ),
        };
        entities.push(Entity::new(resource.clone(), attrs, HashSet::new()).expect("plain values"));
        // The action and its group only: the hierarchy of every action, rebuilt per request,
        // cost more than the rest of the check.
        let group = METHODS
            .iter()
            .find(|(m, _)| *m == action)
            .map(|(_, g)| *g)
            .unwrap_or("admin");
        let group = uid("Omium::Action", group);
        entities.push(Entity::new_no_attrs(
            uid("Omium::Action", action),
            HashSet::from([group.clone()]),
        ));
        entities.push(Entity::new_no_attrs(group, HashSet::new()));
        let entities = match Entities::from_entities(entities, None) {
            Ok(e) => e,
            Err(e) => return Verdict::Denied(format!("the request cannot be evaluated: {e}")),
        };
        let request = match Request::new(
            principal,
            uid("Omium::Action", action),
            resource,
            Context::empty(),
            None,
        ) {
            Ok(r) => r,
            Err(e) => return Verdict::Denied(format!("the request cannot be evaluated: {e}")),
        };
        let answer = self
            .authorizer
            .is_authorized(&request, &self.policies, &entities);
        if answer.decision() == Decision::Allow {
            return Verdict::Allow;
        }
        let reasons: Vec<String> = answer
            .diagnostics()
            .reason()
            .map(|id| {
                self.policies
                    .annotation(id, "id")
                    .map(str::to_string)
                    .unwrap_or_else(|| id.to_string())
            })
            .collect();
        if reasons.iter().any(|r| r == "tenant-isolation") {
            return Verdict::Hidden;
        }
        let group = METHODS
            .iter()
            .find(|(m, _)| *m == action)
            .map(|(_, g)| *g)
            .unwrap_or("?");
        Verdict::Denied(if reasons.is_empty() {
            format!(
                "{} (roles: {}; tenant: {}) may not call {action} (a `{group}` action): no \
                 policy permits it",
                caller.actor,
                caller.roles.join(", "),
                caller.tenant
            )
        } else {
            format!(
                "{} (roles: {}; tenant: {}) may not call {action} on {}: forbidden by policy {}",
                caller.actor,
                caller.roles.join(", "),
                caller.tenant,
                target.resource(),
                reasons.join(", ")
            )
        })
    }
}

/// A Cedar parse error as `file:line:column: message`.
fn located(text: &str, file: &str, e: &cedar_policy::ParseErrors) -> String {
    use miette::Diagnostic;
    let offset = e
        .labels()
        .and_then(|mut l| l.next())
        .map(|l| l.offset())
        .unwrap_or(0);
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    format!("{file}:{line}:{column}: {e}; expected Cedar policies (docs/security.md)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str, roles: &[&str]) -> Caller {
        Caller {
            id: "k1".into(),
            actor: "key:k".into(),
            tenant: tenant.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn exec(tenant: &str, workflow: &str) -> Target {
        Target::Execution {
            id: "e1".into(),
            tenant: tenant.into(),
            workflow: workflow.into(),
            labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        }
    }

    #[test]
    fn roles_and_tenants() {
        let a = Authz::new(None).unwrap();
        let reader = key("acme", &["reader"]);
        assert_eq!(
            a.check(&reader, "history", &exec("acme", "w")),
            Verdict::Allow
        );
        assert!(matches!(
            a.check(&reader, "rollback", &exec("acme", "w")),
            Verdict::Denied(m) if m.contains("may not call rollback (a `work` action)")
        ));
        assert_eq!(
            a.check(&reader, "history", &exec("other", "w")),
            Verdict::Hidden
        );
        assert!(
            matches!(a.check(&reader, "stats", &Target::Store), Verdict::Denied(m) if m.contains("store-wide"))
        );
        let worker = key("acme", &["worker"]);
        assert_eq!(a.check(&worker, "run", &exec("acme", "w")), Verdict::Allow);
        assert!(matches!(
            a.check(&worker, "control", &exec("acme", "w")),
            Verdict::Denied(_)
        ));
        let operator = key("acme", &["operator"]);
        assert_eq!(
            a.check(&operator, "control", &exec("acme", "w")),
            Verdict::Allow
        );
        assert!(matches!(
            a.check(&operator, "control.delete", &exec("acme", "w")),
            Verdict::Denied(_)
        ));
        let admin = key("*", &["admin"]);
        assert_eq!(
            a.check(&admin, "keys.create", &Target::Store),
            Verdict::Allow
        );
        assert_eq!(a.check(&admin, "history", &exec("x", "w")), Verdict::Allow);
        assert!(matches!(
            a.check(&admin, "nonsense", &Target::Store),
            Verdict::Denied(_)
        ));
    }

    #[test]
    fn operators_add_conditions() {
        let text = "// no deletes of production runs\nforbid(principal, action == Omium::Action::\"fork\", resource)\n  when { resource.labels has env && resource.labels.env == \"prod\" };\n";
        let a = Authz::new(Some((text, "authz.cedar"))).unwrap();
        let operator = key("acme", &["operator"]);
        assert!(matches!(
            a.check(&operator, "fork", &exec("acme", "w")),
            Verdict::Denied(m) if m.contains("authz.cedar#0")
        ));
        assert_eq!(
            a.check(&operator, "control", &exec("acme", "w")),
            Verdict::Allow
        );
        let e = Authz::new(Some(("permit(principal, action,\n resourc);", "bad.cedar")))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bad.cedar:2:"), "{e}");
    }
}
