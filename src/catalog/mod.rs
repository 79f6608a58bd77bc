//! The `whisk.system` catalog: the shared packages every hearth data directory starts with,
//! as OpenWhisk's catalog provides them (`/whisk.system/utils/echo`, ...).
//!
//! Owns: the catalog's actions (JavaScript assets compiled into the binary, with OpenWhisk's
//! parameters and results) and bringing a store's copy up to date at start. The namespace has
//! no key: nobody but an administrator (`hearthd admin`, on the data directory) can change it,
//! and every authenticated caller reads and runs it because the package is shared.
//! Must never: touch anything outside `whisk.system`, or write when the store already holds
//! exactly this catalog (a restart, or every controller of a cluster, changes nothing).

use serde_json::{json, Value};

use crate::model::{EntityName, FullyQualifiedName, KeyValue, Kind};
use crate::store::{ActionUpdate, ExecUpdate, PackageUpdate, Store, StoreError};

/// The catalog's namespace, as in OpenWhisk.
pub const SYSTEM_NAMESPACE: &str = "whisk.system";

/// One catalog action: name, code, description, documented parameters.
struct CatalogAction {
    name: &'static str,
    code: &'static str,
    description: &'static str,
    parameters: &'static [(&'static str, bool, &'static str)],
}

/// `whisk.system/utils`: OpenWhisk's building blocks that format and assemble data.
const UTILS: &[CatalogAction] = &[
    CatalogAction {
        name: "echo",
        code: include_str!("utils/echo.js"),
        description: "Returns the input",
        parameters: &[("payload", false, "Any JSON entity")],
    },
    CatalogAction {
        name: "cat",
        code: include_str!("utils/cat.js"),
        description: "Concatenates input into a string",
        parameters: &[("lines", true, "An array of strings or numbers")],
    },
    CatalogAction {
        name: "sort",
        code: include_str!("utils/sort.js"),
        description: "Sorts an array",
        parameters: &[("lines", true, "An array of strings")],
    },
    CatalogAction {
        name: "head",
        code: include_str!("utils/head.js"),
        description: "Extract prefix of an array",
        parameters: &[
            ("lines", true, "An array of strings"),
            ("num", false, "The length of the prefix"),
        ],
    },
    CatalogAction {
        name: "split",
        code: include_str!("utils/split.js"),
        description: "Split a string into an array",
        parameters: &[
            ("payload", true, "A string"),
            (
                "separator",
                false,
                "The character, or the regular expression, to use for splitting the string",
            ),
        ],
    },
    CatalogAction {
        name: "date",
        code: include_str!("utils/date.js"),
        description: "Current date and time",
        parameters: &[],
    },
    CatalogAction {
        name: "smash",
        code: include_str!("utils/smash.js"),
        description: "Nests all properties under given property",
        parameters: &[("$fieldName", true, "Name of property to nest object under")],
    },
];

/// `whisk.system/alarms`: OpenWhisk's alarm feeds. Their invocations are answered by the
/// controller itself (`crate::alarms`, which owns the schedules); the stored actions carry
/// the `feed` annotation and the parameters that `package get` and the clients show, and a
/// body that says where the work happens if it is ever run as code.
const ALARMS: &[CatalogAction] = &[
    CatalogAction {
        name: "alarm",
        code: include_str!("alarms/feed.js"),
        description: "Fire trigger when alarm occurs",
        parameters: &[
            ("cron", true, "A cron pattern (5 fields, or 6 with seconds first), in UTC"),
            ("trigger_payload", false, "What each fire posts"),
            ("startDate", false, "No fire before this date"),
            ("stopDate", false, "No fire from this date on"),
            ("maxTriggers", false, "Fires before the alarm stops (default: no limit)"),
        ],
    },
    CatalogAction {
        name: "once",
        code: include_str!("alarms/feed.js"),
        description: "Fire trigger once when alarm occurs",
        parameters: &[
            ("date", true, "When to fire"),
            ("trigger_payload", false, "What the fire posts"),
            ("deleteAfterFire", false, "false, true (delete the trigger) or rules (its rules too)"),
        ],
    },
    CatalogAction {
        name: "interval",
        code: include_str!("alarms/feed.js"),
        description: "Fire trigger at specified interval",
        parameters: &[
            ("minutes", true, "Minutes between fires"),
            ("trigger_payload", false, "What each fire posts"),
            ("startDate", false, "The first fire (default: in 30 seconds)"),
            ("stopDate", false, "No fire from this date on"),
        ],
    },
];

/// The catalog's packages: name, description, actions, and whether its actions are feeds.
const PACKAGES: &[(&str, &str, &[CatalogAction], bool)] = &[
    ("utils", "Building blocks that format and assemble data", UTILS, false),
    ("alarms", "Alarms and periodic utility", ALARMS, true),
];

/// The kind the catalog's actions run as (the host's Node interpreter).
const KIND: &str = "nodejs:20";

/// Why the catalog could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("installing the whisk.system catalog: {0}")]
    Store(#[from] StoreError),
    #[error("the catalog's name {0:?} is not valid: {1}")]
    Name(&'static str, crate::model::NameError),
}

fn name(s: &'static str) -> Result<EntityName, CatalogError> {
    EntityName::parse(s).map_err(|e| CatalogError::Name(s, e))
}

fn annotations(a: &CatalogAction, feed: bool) -> Vec<KeyValue> {
    let params: Vec<Value> = a
        .parameters
        .iter()
        .map(|(n, required, d)| json!({"name": n, "required": required, "description": d}))
        .collect();
    let mut out =
        vec![KeyValue::new("description", a.description), KeyValue::new("parameters", params)];
    if feed {
        out.push(KeyValue::new("feed", true));
    }
    out
}

/// What the installation changed, for the start-up log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    pub written: usize,
    pub removed: usize,
}

/// Brings one package of the catalog up to date (see [`install`]).
#[allow(clippy::too_many_arguments)]
fn install_package(
    store: &Store,
    ns: &EntityName,
    package: &'static str,
    description: &'static str,
    actions: &[CatalogAction],
    feeds: bool,
    kind: &Kind,
    out: &mut Installed,
) -> Result<(), CatalogError> {
    let pkg = name(package)?;
    let pkg_annotations = vec![KeyValue::new("description", description)];
    let current = store.get_package(ns, &pkg)?;
    let up_to_date = current
        .as_ref()
        .is_some_and(|p| p.shared() && p.annotations == pkg_annotations && p.parameters.is_empty());
    if !up_to_date {
        let update = PackageUpdate {
            binding: None,
            parameters: Some(Vec::new()),
            annotations: Some(pkg_annotations),
            publish: Some(true),
        };
        store.put_package(ns, &pkg, update, true)?;
        out.written += 1;
    }
    for a in actions {
        let fqn = FullyQualifiedName::in_package(ns.clone(), pkg.clone(), name(a.name)?);
        let ann = annotations(a, feeds);
        let same = store.get_action_with_code(&fqn)?.is_some_and(|(m, code)| {
            code == a.code.as_bytes()
                && m.annotations == ann
                && m.exec.code().is_some_and(|e| &e.kind == kind)
        });
        if same {
            continue;
        }
        let update = ActionUpdate {
            exec: Some(ExecUpdate {
                kind: kind.clone(),
                main: None,
                binary: false,
                image: None,
                code: a.code.as_bytes().to_vec(),
            }),
            sequence: None,
            parameters: Some(Vec::new()),
            annotations: Some(ann),
            limits: None,
            publish: Some(false),
        };
        store.put_action(&fqn, update, true)?;
        out.written += 1;
    }
    for old in store.list_package_actions(ns, &pkg, 0, usize::MAX)? {
        if !actions.iter().any(|a| a.name == old.name.as_str()) {
            store.delete_action(&old.fqn())?;
            out.removed += 1;
        }
    }
    Ok(())
}

/// Brings `whisk.system` in `store` up to this build's catalog: creates what is missing,
/// rewrites what differs, removes catalog actions this build no longer has. Users' entities
/// are never read or written.
pub fn install(store: &Store) -> Result<Installed, CatalogError> {
    let ns = name(SYSTEM_NAMESPACE)?;
    let mut out = Installed::default();
    if store.ensure_namespace(&ns)? {
        out.written += 1;
    }
    let kind = Kind::parse(KIND).map_err(|e| StoreError::Corrupt {
        db: "catalog",
        key: KIND.into(),
        message: e.to_string(),
    })?;
    for (package, description, actions, feeds) in PACKAGES {
        install_package(store, &ns, package, description, actions, *feeds, &kind, &mut out)?;
    }
    if out != Installed::default() {
        tracing::info!(
            written = out.written,
            removed = out.removed,
            "whisk.system catalog installed"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util::temp_store;

    #[test]
    fn installs_once_refreshes_changes_and_leaves_users_alone() {
        let (_d, s) = temp_store();
        let first = install(&s).unwrap();
        assert_eq!(first.written, 3 + UTILS.len() + ALARMS.len());
        assert_eq!(install(&s).unwrap(), Installed::default(), "a restart writes nothing");
        let ns = name(SYSTEM_NAMESPACE).unwrap();
        let utils = name("utils").unwrap();
        let p = s.get_package(&ns, &utils).unwrap().unwrap();
        assert!(p.shared());
        let listed: Vec<String> = s
            .list_package_actions(&ns, &utils, 0, 100)
            .unwrap()
            .into_iter()
            .map(|a| a.name.to_string())
            .collect();
        for want in ["echo", "cat", "sort", "head", "split", "date"] {
            assert!(listed.iter().any(|n| n == want), "{want} in {listed:?}");
        }
        // An older catalog: a changed action and one this build no longer ships.
        let echo = FullyQualifiedName::in_package(ns.clone(), utils.clone(), name("echo").unwrap());
        let stale = ActionUpdate {
            exec: Some(ExecUpdate {
                kind: Kind::parse(KIND).unwrap(),
                main: None,
                binary: false,
                image: None,
                code: b"function main() { return {old: true}; }".to_vec(),
            }),
            ..Default::default()
        };
        s.put_action(&echo, stale.clone(), true).unwrap();
        let gone = FullyQualifiedName::in_package(ns.clone(), utils.clone(), name("gone").unwrap());
        s.put_action(&gone, stale.clone(), false).unwrap();
        // A user's namespace and action, untouched by the upgrade.
        let guest = name("guest").unwrap();
        s.create_namespace(&guest).unwrap();
        let mine = FullyQualifiedName::new(guest, name("mine").unwrap());
        let before = s.put_action(&mine, stale, false).unwrap();
        assert_eq!(install(&s).unwrap(), Installed { written: 1, removed: 1 });
        let (m, code) = s.get_action_with_code(&echo).unwrap().unwrap();
        assert_eq!(code, include_str!("utils/echo.js").as_bytes());
        assert_eq!(m.version, "0.0.3", "refreshed as an update");
        assert!(s.get_action(&gone).unwrap().is_none());
        assert_eq!(s.get_action(&mine).unwrap().unwrap(), before);
    }
}
