//! The `__OW_*` variables of the current activation, which every exec of a run inherits.
//!
//! Kept in a map and passed to each spawn rather than written into this process's environment:
//! a run sets its own set and drops the previous run's names that it does not set again, and
//! nothing here can panic on a name or value the environment cannot hold (std's `set_var`
//! would).

use std::collections::BTreeMap;
use std::io;

use serde_json::Value;

/// The prefix OpenWhisk gives the activation's variables.
const PREFIX: &str = "__OW_";

/// The variables the next exec gets on top of the launcher's environment.
#[derive(Debug, Default)]
pub struct ActivationEnv {
    vars: BTreeMap<String, String>,
}

impl ActivationEnv {
    /// Replaces the set with a run message's `env` object (its keys prefixed with `__OW_`).
    /// A name or value an environment cannot carry (a `=` in the name, a NUL anywhere) is
    /// left out with a line in the activation's logs.
    pub fn update(&mut self, env: Option<&Value>) -> io::Result<()> {
        self.vars.clear();
        let Some(Value::Object(env)) = env else { return Ok(()) };
        for (key, value) in env {
            let name = format!("{PREFIX}{key}");
            // As Python's str(): a string as is, anything else as its JSON text.
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if key.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                crate::log(&format!(
                    "cannot set environment variable {name:?}: not a valid name or value"
                ))?;
                continue;
            }
            self.vars.insert(name, value);
        }
        Ok(())
    }

    /// The variables, to pass to a spawn.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_replaces_the_previous_runs_variables() {
        let mut env = ActivationEnv::default();
        env.update(Some(&json!({"ACTIVATION_ID": "a1", "DEADLINE": 17, "API_KEY": "k"}))).unwrap();
        let got: Vec<_> = env.vars().collect();
        assert_eq!(
            got,
            [("__OW_ACTIVATION_ID", "a1"), ("__OW_API_KEY", "k"), ("__OW_DEADLINE", "17")]
        );
        env.update(Some(&json!({"ACTIVATION_ID": "a2"}))).unwrap();
        assert_eq!(env.vars().collect::<Vec<_>>(), [("__OW_ACTIVATION_ID", "a2")]);
        env.update(None).unwrap();
        assert_eq!(env.vars().count(), 0);
    }
}
