//! Packages, bindings and sharing: who may read which package, what an action path inside a
//! package (or through a binding) resolves to, and the parameters it runs with.
//!
//! The rule for another namespace's entities is OpenWhisk's: a *shared* package (published,
//! not a binding) can be read and its actions run by any authenticated caller; nothing of
//! another namespace is ever written. Everything else of another namespace is answered with
//! the same 403 as a namespace that does not exist, so a caller learns nothing about what
//! exists there.

use serde_json::{Map, Value};

use super::{blocking, Controller, ControllerError};
use crate::model::{
    merge_parameters, ActionMeta, Binding, EntityName, FullyQualifiedName, Identity, KeyValue,
    PackageMeta, RESERVED_PACKAGE_NAMES,
};
use crate::store::{PackageUpdate, Resolution};

/// An action found through its path, ready to run or to show.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedAction {
    /// The action as stored (its fqn names the package that really holds it).
    pub action: ActionMeta,
    /// Its parameters merged in OpenWhisk's order: package < binding < action.
    pub params: Map<String, Value>,
    /// `namespace/binding` when reached through a binding (the activation's `binding`
    /// annotation).
    pub binding: Option<String>,
}

/// A package as `GET` shows it: a binding carries the bound package's parameters under its
/// own, and lists the bound package's actions.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageView {
    pub package: PackageMeta,
    pub actions: Vec<ActionMeta>,
}

/// The answer to every refused or hidden entity of another namespace.
fn forbidden(ns: &EntityName) -> ControllerError {
    ControllerError::Forbidden(ns.to_string())
}

fn not_found_package(ns: &EntityName, name: &EntityName) -> ControllerError {
    ControllerError::NotFound(format!("package {ns}/{name} does not exist"))
}

/// Whether `caller` may read `p` (and run its actions).
fn readable(caller: &Identity, p: &PackageMeta) -> bool {
    p.namespace == caller.namespace || p.shared()
}

impl Controller {
    /// The namespace a path segment names and whether it is the caller's own (`_` is). A
    /// foreign name is returned as it is; each route decides what a foreign caller may read.
    pub fn path_namespace(
        &self,
        caller: &Identity,
        seg: &str,
    ) -> Result<(EntityName, bool), ControllerError> {
        if seg == "_" || seg == caller.namespace.as_str() {
            return Ok((caller.namespace.clone(), true));
        }
        match EntityName::parse(seg) {
            Ok(ns) => Ok((ns, false)),
            Err(_) => Err(ControllerError::Forbidden(seg.chars().take(256).collect())),
        }
    }

    /// Creates or updates a package of the caller's namespace. A binding must point at a
    /// package (not a binding) of the caller's namespace or a shared one of another.
    pub async fn put_package(
        &self,
        caller: &Identity,
        name: EntityName,
        update: PackageUpdate,
        overwrite: bool,
    ) -> Result<PackageMeta, ControllerError> {
        if RESERVED_PACKAGE_NAMES.contains(&name.as_str()) {
            return Err(ControllerError::Invalid(format!("Package name '{name}' is reserved.")));
        }
        if let Some(b) = &update.binding {
            // OpenWhisk's order: a package that exists is never made a binding, whatever the
            // binding names (the store checks it again inside its transaction).
            let existing = self.store.get_package(&caller.namespace, &name)?;
            if existing.is_some_and(|p| p.binding.is_none()) {
                let key = format!("{}/{name}", caller.namespace);
                return Err(crate::store::StoreError::PackageCannotBecomeBinding(key).into());
            }
            self.check_binding(caller, b)?;
        }
        let store = self.store.clone();
        let ns = caller.namespace.clone();
        blocking(move || store.put_package(&ns, &name, update, overwrite)).await
    }

    /// OpenWhisk's `checkBinding`, with its messages; a package of another namespace that is
    /// missing or not shared is refused as any hidden entity is.
    fn check_binding(&self, caller: &Identity, b: &Binding) -> Result<(), ControllerError> {
        let target = self.store.get_package(&b.namespace, &b.name)?;
        let own = b.namespace == caller.namespace;
        match target {
            Some(t) if !own && !t.shared() => Err(forbidden(&b.namespace)),
            None if !own => Err(forbidden(&b.namespace)),
            None => {
                let as_action = FullyQualifiedName::new(b.namespace.clone(), b.name.clone());
                if self.store.get_action(&as_action)?.is_some() {
                    Err(ControllerError::Conflict(
                        "Cannot bind to a resource that is not a package.".into(),
                    ))
                } else {
                    Err(ControllerError::Invalid(
                        "Binding references a package that does not exist.".into(),
                    ))
                }
            }
            Some(t) if t.binding.is_some() => {
                Err(ControllerError::Invalid("Cannot bind to another package binding.".into()))
            }
            Some(_) => Ok(()),
        }
    }

    /// A package as the caller may see it: its own, or a shared one of another namespace.
    pub fn get_package(
        &self,
        caller: &Identity,
        ns: &EntityName,
        name: &EntityName,
    ) -> Result<PackageView, ControllerError> {
        let own = ns == &caller.namespace;
        let p = match self.store.get_package(ns, name)? {
            Some(p) if readable(caller, &p) => p,
            _ if !own => return Err(forbidden(ns)),
            Some(_) => return Err(forbidden(ns)),
            None => return Err(not_found_package(ns, name)),
        };
        let Some(b) = &p.binding else {
            let actions = self.store.list_package_actions(ns, name, 0, usize::MAX)?;
            return Ok(PackageView { package: p, actions });
        };
        let target = self.bound_package(caller, b)?;
        let actions =
            self.store.list_package_actions(&target.namespace, &target.name, 0, usize::MAX)?;
        let mut package = p.clone();
        package.parameters = as_list(merge_parameters(&[&target.parameters, &p.parameters]));
        Ok(PackageView { package, actions })
    }

    /// The package a binding points at, if the caller may still read it.
    fn bound_package(
        &self,
        caller: &Identity,
        b: &Binding,
    ) -> Result<PackageMeta, ControllerError> {
        match self.store.get_package(&b.namespace, &b.name)? {
            Some(t) if readable(caller, &t) => Ok(t),
            Some(_) => Err(forbidden(&b.namespace)),
            None if b.namespace != caller.namespace => Err(forbidden(&b.namespace)),
            None => Err(not_found_package(&b.namespace, &b.name)),
        }
    }

    /// Packages listed under `ns`: all of the caller's own (plus every other namespace's
    /// shared ones with `public`), or another namespace's shared ones.
    pub fn list_packages(
        &self,
        caller: &Identity,
        ns: &EntityName,
        public: bool,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<PackageMeta>, ControllerError> {
        if ns != &caller.namespace {
            return Ok(self.store.list_shared_packages(Some(ns), None, skip, limit)?);
        }
        if !public {
            return Ok(self.store.list_packages(ns, skip, limit)?);
        }
        let mut all = self.store.list_packages(ns, 0, usize::MAX)?;
        all.extend(self.store.list_shared_packages(None, Some(ns), 0, usize::MAX)?);
        Ok(all.into_iter().skip(skip).take(limit).collect())
    }

    pub async fn delete_package(
        &self,
        ns: EntityName,
        name: EntityName,
        force: bool,
    ) -> Result<PackageMeta, ControllerError> {
        let store = self.store.clone();
        let (n, p) = (ns.clone(), name.clone());
        blocking(move || store.delete_package(&n, &p, force))
            .await?
            .ok_or_else(|| not_found_package(&ns, &name))
    }

    /// The actions listed under `ns/pkg/` (through a binding: the bound package's).
    pub fn list_package_actions(
        &self,
        caller: &Identity,
        ns: &EntityName,
        pkg: &EntityName,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<ActionMeta>, ControllerError> {
        let view_of = |p: &PackageMeta| (p.namespace.clone(), p.name.clone());
        let (holder_ns, holder) = match self.store.get_package(ns, pkg)? {
            Some(p) if readable(caller, &p) => match &p.binding {
                Some(b) => view_of(&self.bound_package(caller, b)?),
                None => view_of(&p),
            },
            Some(_) => return Err(forbidden(ns)),
            None if ns != &caller.namespace => return Err(forbidden(ns)),
            None => return Err(not_found_package(ns, pkg)),
        };
        Ok(self.store.list_package_actions(&holder_ns, &holder, skip, limit)?)
    }

    /// Resolves an action path for reading or running it as `caller`: the package's rights
    /// are checked before the action is looked at, so a hidden package never tells whether
    /// an action exists in it. A few memory-map lookups, no code read: the invoke path.
    pub fn resolve_action(
        &self,
        caller: &Identity,
        fqn: &FullyQualifiedName,
    ) -> Result<ResolvedAction, ControllerError> {
        let own = fqn.namespace == caller.namespace;
        if fqn.package.is_none() && !own {
            return Err(forbidden(&fqn.namespace));
        }
        let Resolution { package, bound, action } = self.store.resolve_action(fqn)?;
        let not_found = || ControllerError::NotFound(format!("action {fqn} does not exist"));
        let Some(package) = package else {
            return match (&fqn.package, own) {
                (None, _) => {
                    let action = action.ok_or_else(not_found)?;
                    let params = merge_parameters(&[&action.parameters]);
                    Ok(ResolvedAction { action, params, binding: None })
                }
                (Some(_), false) => Err(forbidden(&fqn.namespace)),
                (Some(p), true) => Err(not_found_package(&fqn.namespace, p)),
            };
        };
        if !readable(caller, &package) {
            return Err(forbidden(&fqn.namespace));
        }
        // Through a binding, the bound package must still be readable (it may have been
        // unpublished or deleted since the binding was made).
        let target = match (&package.binding, &bound) {
            (Some(_), Some(t)) if !readable(caller, t) => return Err(forbidden(&t.namespace)),
            (Some(_), Some(t)) => Some(t),
            (Some(b), None) => {
                return Err(self.bound_package(caller, b).err().unwrap_or_else(not_found))
            }
            (None, _) => None,
        };
        let action = action.ok_or_else(not_found)?;
        let params = match target {
            Some(t) => merge_parameters(&[&t.parameters, &package.parameters, &action.parameters]),
            None => merge_parameters(&[&package.parameters, &action.parameters]),
        };
        let binding = target.map(|_| package.key());
        Ok(ResolvedAction { action, params, binding })
    }
}

impl Controller {
    /// An action as `GET` shows it to `caller`: inside a package, with the package's (and
    /// binding's) parameters merged under its own, as OpenWhisk shows it; with its code when
    /// asked (copied: the response outlives the read transaction).
    pub fn read_action(
        &self,
        caller: &Identity,
        fqn: &FullyQualifiedName,
        with_code: bool,
    ) -> Result<(ActionMeta, Option<Vec<u8>>), ControllerError> {
        let r = self.resolve_action(caller, fqn)?;
        let mut action = r.action;
        if fqn.package.is_some() {
            action.parameters = as_list(r.params);
        }
        if !with_code {
            return Ok((action, None));
        }
        let (_, code) = self.get_action_with_code(&action.fqn())?;
        Ok((action, Some(code)))
    }
}

/// Merged parameters back in OpenWhisk's list shape.
pub(crate) fn as_list(params: Map<String, Value>) -> Vec<KeyValue> {
    params.into_iter().map(|(key, value)| KeyValue { key, value }).collect()
}
