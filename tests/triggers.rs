//! Triggers, rules and alarms end to end through one real `hearthd standalone` server shared
//! by every phase (runc containers, LMDB, HTTP): every route of triggers and rules with
//! OpenWhisk's answers, a trigger with three rules fired 1,000 times (every record there,
//! every action record's `cause` its trigger activation), OpenWhisk's JavaScript client
//! (triggers, rules, feeds), and the built-in alarms (a cron schedule fires on time, and
//! survives a restart without firing a tick twice). Needs root and runc.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

const NOOP_PY: &str = "def main(args):\n    return {\"seen\": args}\n";

#[test]
fn triggers_rules_and_alarms() {
    require_root();
    // Room for the 3,000 queued activations of the 1,000 fires (none may be refused).
    let mut s = Standalone::start("queue_limit = 4096\n");
    let c = s.client();
    for a in ["noop1", "noop2", "noop3"] {
        c.put_action(a, "python:3", NOOP_PY, Some(json!({"memory": 128})));
    }
    routes(&c);
    fire_many(&s, &c);
    openwhisk_client("triggers-client.js", &s.url(), GUEST);
    cli(&s);
    alarms(&mut s);
}

fn path(kind: &str, name: &str) -> String {
    format!("/api/v1/namespaces/_/{kind}/{name}")
}

/// Every route of triggers and rules, with OpenWhisk's statuses, shapes and messages.
fn routes(c: &Client) {
    // Create, conflict, get, update (version bump), list, count.
    let t = json!({"parameters": [{"key": "from", "value": "trigger"}, {"key": "x", "value": 1}],
                   "annotations": [{"key": "note", "value": "n"}]});
    let r = c.json("PUT", &path("triggers", "t1"), t.clone());
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    assert_eq!((b["name"].as_str(), b["namespace"].as_str()), (Some("t1"), Some("guest")));
    assert_eq!(b["version"], "0.0.1");
    assert_eq!(b["parameters"][0]["value"], "trigger");
    assert_eq!(c.json("PUT", &path("triggers", "t1"), t.clone()).status, 409);
    let r = c.json(
        "PUT",
        &format!("{}?overwrite=true", path("triggers", "t1")),
        json!({"publish": false}),
    );
    assert_eq!((r.status, r.json()["version"].as_str()), (200, Some("0.0.2")));
    assert_eq!(
        r.json()["parameters"].as_array().unwrap().len(),
        2,
        "an update keeps what it omits"
    );
    assert_eq!(c.get(&path("triggers", "nope")).status, 404);
    assert_eq!(
        c.get(&path("triggers", "nope")).json()["error"],
        "The requested resource does not exist."
    );
    let bad = json!({"annotations": [{"key": "feed", "value": "/a/b/c/d"}]});
    let r = c.json("PUT", &path("triggers", "badfeed"), bad);
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("Feed name is not valid")));
    c.json("PUT", &path("triggers", "t2"), json!({}));
    let l = c.get("/api/v1/namespaces/_/triggers?limit=1&skip=1").json();
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["name"], "t2");
    assert_eq!(c.get("/api/v1/namespaces/_/triggers?count=true").json()["triggers"], 2);
    // Firing without a rule: 204, no record.
    let r = c.json("POST", &path("triggers", "t1"), json!({"a": 1}));
    assert_eq!((r.status, r.body.len()), (204, 0), "{}", r.text());
    // Another namespace's triggers are refused like a missing namespace.
    assert_eq!(c.get("/api/v1/namespaces/other/triggers/t1").status, 403);

    // Rules: create checks the trigger and the action, with OpenWhisk's messages.
    let rule = |t: &str, a: &str| json!({"trigger": t, "action": a});
    let r = c.json("PUT", &path("rules", "r1"), rule("/_/missing", "noop1"));
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("trigger /guest/missing does not exist"))
    );
    let r = c.json("PUT", &path("rules", "r1"), rule("t1", "missing"));
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("action /guest/missing does not exist"))
    );
    let r = c.json("PUT", &path("rules", "r1"), json!({"trigger": "t1"}));
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("rule requires a valid trigger and a valid action"))
    );
    let r = c.json("PUT", &path("rules", "r1"), rule("/_/t1", "noop1"));
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    assert_eq!(b["status"], "active");
    assert_eq!(b["trigger"], json!({"path": "guest", "name": "t1"}));
    assert_eq!(b["action"], json!({"path": "guest", "name": "noop1"}));
    assert_eq!(c.json("PUT", &path("rules", "r1"), rule("t1", "noop1")).status, 409);
    // A rule may name an action of a shared package of another namespace.
    let r = c.json("PUT", &path("rules", "r-echo"), rule("t2", "/whisk.system/utils/echo"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["action"], json!({"path": "whisk.system/utils", "name": "echo"}));
    // A name is one entity's only: a trigger named like a rule is refused.
    let r = c.json("PUT", &path("triggers", "r1"), json!({}));
    assert_eq!(r.status, 409, "{}", r.text());
    // The trigger shows its rules map as OpenWhisk does.
    let t1 = c.get(&path("triggers", "t1")).json();
    assert_eq!(
        t1["rules"]["guest/r1"],
        json!({"action": {"path": "guest", "name": "noop1"}, "status": "active"}),
        "{t1}"
    );
    // Disable, the same again (200), status in GET and in the trigger; enable.
    for (status, want) in [("inactive", "inactive"), ("inactive", "inactive"), ("active", "active")]
    {
        let r = c.json("POST", &path("rules", "r1"), json!({"status": status}));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(c.get(&path("rules", "r1")).json()["status"], want);
        assert_eq!(c.get(&path("triggers", "t1")).json()["rules"]["guest/r1"]["status"], want);
    }
    let r = c.json("POST", &path("rules", "r1"), json!({"status": "sleeping"}));
    assert_eq!(r.status, 400);
    assert_eq!(c.get("/api/v1/namespaces/_/rules?count=true").json()["rules"], 2);
    let l = c.get("/api/v1/namespaces/_/rules").json();
    assert_eq!(l.as_array().unwrap().len(), 2);

    // Fire: the rule's action runs with the trigger's parameters under the payload; the
    // trigger record has the payload as its result and one log line per rule.
    let r = c.json("POST", &path("triggers", "t1"), json!({"x": 2, "p": "payload"}));
    assert_eq!(r.status, 202, "{}", r.text());
    let tid = r.json()["activationId"].as_str().unwrap().to_owned();
    assert_eq!(r.header("x-openwhisk-activation-id"), Some(tid.as_str()));
    let rec = c.record(&tid, Duration::from_secs(10)).expect("trigger record");
    assert_eq!(rec["name"], "t1");
    assert_eq!(rec["response"]["result"], json!({"x": 2, "p": "payload"}));
    assert_eq!(rec["response"]["status"], "success");
    let logs = rec["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{rec}");
    let line: Value = serde_json::from_str(logs[0].as_str().unwrap()).unwrap();
    assert_eq!(
        (line["rule"].as_str(), line["action"].as_str()),
        (Some("guest/r1"), Some("guest/noop1"))
    );
    assert_eq!((line["statusCode"].as_u64(), line["success"].as_bool()), (Some(0), Some(true)));
    let aid = line["activationId"].as_str().unwrap();
    let act = wait_done(c, aid);
    assert_eq!(act["cause"], tid.as_str(), "{act}");
    assert_eq!(
        act["response"]["result"]["seen"],
        json!({"from": "trigger", "x": 2, "p": "payload"}),
        "{act}"
    );
    // A shared package's action through a rule, run as the rule's namespace.
    let r = c.json("POST", &path("triggers", "t2"), json!({"payload": "hi"}));
    assert_eq!(r.status, 202, "{}", r.text());
    let rec =
        c.record(r.json()["activationId"].as_str().unwrap(), Duration::from_secs(10)).unwrap();
    let line: Value = serde_json::from_str(rec["logs"][0].as_str().unwrap()).unwrap();
    let echo = wait_done(c, line["activationId"].as_str().unwrap());
    assert_eq!(echo["namespace"], "guest");
    assert_eq!(echo["response"]["result"]["payload"], "hi", "{echo}");

    // An inactive rule next to an active one: logged with OpenWhisk's message, not run.
    c.json("PUT", &path("rules", "r1b"), rule("t1", "noop2"));
    c.json("POST", &path("rules", "r1b"), json!({"status": "inactive"}));
    let r = c.json("POST", &path("triggers", "t1"), json!({}));
    let rec =
        c.record(r.json()["activationId"].as_str().unwrap(), Duration::from_secs(10)).unwrap();
    let lines: Vec<Value> = rec["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l.as_str().unwrap()).unwrap())
        .collect();
    let off = lines.iter().find(|l| l["rule"] == "guest/r1b").unwrap();
    assert_eq!(off["success"], false);
    assert_eq!(
        off["error"],
        "Rule 'guest/r1b' is inactive, action 'guest/noop2' was not activated."
    );
    // A rule whose action is gone: the fire still records, the line says why.
    c.json(
        "PUT",
        "/api/v1/namespaces/_/actions/doomed",
        json!({"exec": {"kind": "python:3", "code": NOOP_PY}}),
    );
    c.json("PUT", &path("rules", "r-doomed"), rule("t2", "doomed"));
    assert_eq!(c.req("DELETE", "/api/v1/namespaces/_/actions/doomed", b"").status, 200);
    let r = c.json("POST", &path("triggers", "t2"), json!({}));
    let rec =
        c.record(r.json()["activationId"].as_str().unwrap(), Duration::from_secs(10)).unwrap();
    let text = rec["logs"].to_string();
    assert!(text.contains("The requested resource does not exist."), "{text}");

    // Moving a rule to another trigger; delete answers the rule, inactive.
    let r = c.json(
        "PUT",
        &format!("{}?overwrite=true", path("rules", "r1b")),
        json!({"trigger": "t2"}),
    );
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("inactive")), "{}", r.text());
    assert!(c.get(&path("triggers", "t1")).json()["rules"].get("guest/r1b").is_none());
    for rname in ["r1b", "r-echo", "r-doomed"] {
        let r = c.req("DELETE", &path("rules", rname), b"");
        assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("inactive")));
    }
    assert_eq!(c.req("DELETE", &path("rules", "r1b"), b"").status, 404);
    // Deleting a trigger leaves its rules, inactive; they cannot be enabled.
    let r = c.req("DELETE", &path("triggers", "t2"), b"");
    assert_eq!((r.status, r.json()["name"].as_str()), (200, Some("t2")));
    c.json("PUT", &path("rules", "r2"), rule("t1", "noop2"));
    c.req("DELETE", &path("triggers", "t1"), b"");
    assert_eq!(c.get(&path("rules", "r2")).json()["status"], "inactive");
    let r = c.json("POST", &path("rules", "r2"), json!({"status": "active"}));
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("Only rules with existing triggers can be activated"))
    );
    for rname in ["r1", "r2"] {
        assert_eq!(c.req("DELETE", &path("rules", rname), b"").status, 200);
    }
    // The namespace summary lists triggers and rules.
    c.json("PUT", &path("triggers", "summary-t"), json!({}));
    let ns = c.get("/api/v1/namespaces/_").json();
    assert!(ns["triggers"].to_string().contains("summary-t"), "{ns}");
    c.req("DELETE", &path("triggers", "summary-t"), b"");
}

/// The finished record of `id` (not its pending stub).
fn wait_done(c: &Client, id: &str) -> Value {
    wait_until("the action's record", Duration::from_secs(30), Duration::from_millis(50), || {
        let r = c.get(&format!("/api/v1/namespaces/_/activations/{id}"));
        (r.status == 200).then(|| r.json()).filter(|a| a["response"]["status"] == "success")
    })
}

/// `hearthd admin ARGS` on the server's data directory.
fn admin(s: &Standalone, args: &[&str]) {
    let out = Command::new(hearthd())
        .arg("admin")
        .arg("--data-dir")
        .arg(s.data_dir())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// All records named `name` with their full documents.
fn records_named(c: &Client, name: &str, expect: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < expect + 1 {
        let page = c
            .get(&format!(
                "/api/v1/namespaces/_/activations?name={name}&docs=true&limit=200&skip={}",
                out.len()
            ))
            .json();
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        out.extend(page);
    }
    out
}

/// A trigger with three active rules fired 1,000 times: 1,000 trigger records, 3,000 action
/// records, each action record's `cause` its trigger's activation.
fn fire_many(s: &Standalone, c: &Client) {
    const FIRES: usize = 1000;
    // A fire is charged to the namespace's fires per minute, with OpenWhisk's 429 (the
    // routes above fired more than one this minute, or the next one is the second).
    c.json("PUT", &path("triggers", "many"), json!({}));
    admin(s, &["limits", "set", "guest", "--fires-per-minute", "1"]);
    c.json("POST", &path("triggers", "many"), json!({}));
    let refused = c.json("POST", &path("triggers", "many"), json!({}));
    assert_eq!(refused.status, 429, "{}", refused.text());
    let msg = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(
        msg.starts_with("Too many requests in the last minute (count: ")
            && msg.ends_with("allowed: 1)."),
        "{msg}"
    );
    admin(
        s,
        &[
            "limits",
            "set",
            "guest",
            "--concurrent-invocations",
            "100000",
            "--fires-per-minute",
            "100000",
        ],
    );

    for (i, a) in ["noop1", "noop2", "noop3"].iter().enumerate() {
        let r = c.json(
            "PUT",
            &path("rules", &format!("many{i}")),
            json!({"trigger": "many", "action": a}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                (0..FIRES / 4)
                    .map(|i| {
                        let r = c.json("POST", &path("triggers", "many"), json!({"i": i}));
                        assert_eq!(r.status, 202, "{}", r.text());
                        r.json()["activationId"].as_str().unwrap().to_owned()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: HashSet<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let fired_in = started.elapsed();
    eprintln!("fired {FIRES} in {fired_in:?}");
    assert_eq!(ids.len(), FIRES);
    let count = |name: &str| {
        c.get(&format!("/api/v1/namespaces/_/activations?name={name}&count=true")).json()
            ["activations"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(count("many"), FIRES as u64);
    // Every rule's action ran once per fire, caused by it.
    let mut expected: HashMap<String, String> = HashMap::new();
    for t in records_named(c, "many", FIRES) {
        let tid = t["activationId"].as_str().unwrap().to_owned();
        let logs = t["logs"].as_array().unwrap();
        assert_eq!(logs.len(), 3, "{t}");
        for l in logs {
            let l: Value = serde_json::from_str(l.as_str().unwrap()).unwrap();
            assert_eq!(l["success"], true, "{l}");
            expected.insert(l["activationId"].as_str().unwrap().to_owned(), tid.clone());
        }
    }
    assert_eq!(expected.len(), 3 * FIRES);
    // On this shared machine a no-op's run can take a moment: wait while records keep coming.
    let mut last = (0, Instant::now());
    let done = loop {
        let all: Vec<Value> = ["noop1", "noop2", "noop3"]
            .iter()
            .flat_map(|a| records_named(c, a, FIRES + 10))
            .filter(|r| r["response"]["status"] == "success")
            .collect();
        let caused =
            all.iter().filter(|r| r["cause"].as_str().is_some_and(|t| ids.contains(t))).count();
        if caused >= 3 * FIRES {
            break all;
        }
        if caused > last.0 {
            last = (caused, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(60),
            "no new action record for 60 s: {caused} of {} finished",
            3 * FIRES
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let mut seen = 0;
    for r in &done {
        let id = r["activationId"].as_str().unwrap();
        if let Some(tid) = expected.get(id) {
            assert_eq!(r["cause"].as_str(), Some(tid.as_str()), "{r}");
            seen += 1;
        }
    }
    assert_eq!(seen, 3 * FIRES, "every action record of the fires, none lost");
    eprintln!("fired {FIRES} times (3 rules) in {fired_in:?}; all {seen} action records caused by their trigger activation");
    for i in 0..3 {
        c.req("DELETE", &path("rules", &format!("many{i}")), b"");
    }
    c.req("DELETE", &path("triggers", "many"), b"");
}

/// `hearth ARGS` against the server; its stdout (asserting success).
fn hearth_cli(s: &Standalone, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .env("HEARTH_CONFIG", "/nonexistent")
        .args(["--apihost", &s.url(), "--auth", GUEST])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "hearth {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The `hearth trigger` and `hearth rule` commands, `--feed` included.
fn cli(s: &Standalone) {
    let c = s.client();
    hearth_cli(s, &["trigger", "create", "cli-t", "-p", "from", "cli"]);
    hearth_cli(s, &["rule", "create", "cli-r", "cli-t", "noop1"]);
    assert!(hearth_cli(s, &["rule", "status", "cli-r"]).contains("active"));
    hearth_cli(s, &["rule", "disable", "cli-r"]);
    assert!(hearth_cli(s, &["rule", "status", "cli-r"]).contains("inactive"));
    assert!(hearth_cli(s, &["trigger", "fire", "cli-t"]).contains("no active rule"));
    hearth_cli(s, &["rule", "enable", "cli-r"]);
    let fired = hearth_cli(s, &["trigger", "fire", "cli-t", "-p", "x", "1"]);
    let id = fired.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(c.record(&id, Duration::from_secs(10)).is_some(), "{fired}");
    assert!(hearth_cli(s, &["rule", "list"]).contains("/guest/cli-r"));
    assert!(hearth_cli(s, &["trigger", "list"]).contains("/guest/cli-t"));
    assert!(hearth_cli(s, &["trigger", "get", "cli-t"]).contains("guest/cli-r"));
    hearth_cli(s, &["rule", "update", "cli-r", "cli-t", "noop2"]);
    hearth_cli(s, &["rule", "delete", "cli-r"]);
    hearth_cli(s, &["trigger", "update", "cli-t", "-p", "from", "update"]);
    hearth_cli(s, &["trigger", "delete", "cli-t"]);
    // --feed: the trigger and its schedule; a refused feed leaves no trigger; delete stops it.
    hearth_cli(
        s,
        &[
            "trigger",
            "create",
            "cli-alarm",
            "--feed",
            "/whisk.system/alarms/alarm",
            "-p",
            "cron",
            "0 0 1 1 *",
        ],
    );
    let r = feed(&c, "alarm", json!({"lifecycleEvent": "READ", "triggerName": "cli-alarm"}));
    assert_eq!(r.json()["response"]["result"]["config"]["cron"], "0 0 1 1 *", "{}", r.text());
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .env("HEARTH_CONFIG", "/nonexistent")
        .args(["--apihost", &s.url(), "--auth", GUEST])
        .args([
            "trigger",
            "create",
            "cli-bad",
            "--feed",
            "/whisk.system/alarms/alarm",
            "-p",
            "cron",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cron pattern 'nope' is not valid"));
    assert_eq!(c.get(&path("triggers", "cli-bad")).status, 404);
    hearth_cli(s, &["trigger", "delete", "cli-alarm"]);
    let r = feed(&c, "alarm", json!({"lifecycleEvent": "READ", "triggerName": "cli-alarm"}));
    assert_eq!(r.status, 502, "the schedule went with the trigger: {}", r.text());
}

/// Invokes the alarms feed `feed` with `params`, blocking; the response.
fn feed(c: &Client, feed: &str, params: Value) -> Resp {
    c.json(
        "POST",
        &format!("/api/v1/namespaces/whisk.system/actions/alarms/{feed}?blocking=true"),
        params,
    )
}

/// The ticks the server's log says it fired for `alarm` (`guest/name`), in order.
fn fired_ticks(s: &Standalone, alarm: &str) -> Vec<u64> {
    s.log_text()
        .lines()
        .filter(|l| l.contains("alarm fired") && l.contains(&format!("alarm={alarm} ")))
        .filter_map(|l| {
            l.split("tick=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

/// The built-in alarms: the feed lifecycle with the provider's answers, a 2-second cron that
/// fires on time, a once alarm, and a schedule that survives a restart without a tick fired
/// twice.
fn alarms(s: &mut Standalone) {
    let c = s.client();
    // The catalog shows the feeds.
    let p = c.get("/api/v1/namespaces/whisk.system/packages/alarms").json();
    let feeds: Vec<&str> =
        p["feeds"].as_array().unwrap().iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(feeds.len(), 3, "{p}");
    // As `trigger create --feed`: the trigger, then the feed's CREATE.
    let ann = json!({"annotations": [{"key": "feed", "value": "/whisk.system/alarms/alarm"}]});
    assert_eq!(c.json("PUT", &path("triggers", "tick"), ann).status, 200);
    c.json("PUT", &path("rules", "tick-r"), json!({"trigger": "tick", "action": "noop1"}));
    let base = json!({"triggerName": "/_/tick", "authKey": GUEST});
    let with = |extra: Value| {
        let mut p = base.clone();
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        p
    };
    let r = feed(&c, "alarm", with(json!({"lifecycleEvent": "CREATE", "cron": "nope"})));
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["response"]["result"]["error"], "cron pattern 'nope' is not valid");
    let r = feed(
        &c,
        "alarm",
        json!({"lifecycleEvent": "CREATE", "triggerName": "/_/nosuch", "cron": "* * * * *"}),
    );
    assert_eq!(r.json()["response"]["result"]["error"], "Trigger authentication request failed.");
    let r = feed(&c, "alarm", with(json!({"lifecycleEvent": "BOGUS"})));
    assert_eq!(r.json()["response"]["result"]["error"], "unsupported lifecycleEvent");
    let created = std::time::SystemTime::now();
    let r = feed(
        &c,
        "alarm",
        with(
            json!({"lifecycleEvent": "CREATE", "cron": "*/2 * * * * *", "trigger_payload": {"k": "v"}}),
        ),
    );
    assert_eq!(
        (r.status, &r.json()["response"]["result"]),
        (200, &json!({"status": "success"})),
        "{}",
        r.text()
    );
    let r = feed(&c, "alarm", with(json!({"lifecycleEvent": "READ"}))).json();
    let cfg = &r["response"]["result"]["config"];
    assert_eq!(
        (cfg["cron"].as_str(), &cfg["payload"]),
        (Some("*/2 * * * * *"), &json!({"k": "v"})),
        "{r}"
    );
    assert_eq!(r["response"]["result"]["status"]["active"], true);

    // It fires every 2 seconds with its payload.
    std::thread::sleep(Duration::from_secs(9));
    let fired = fired_ticks(s, "guest/tick");
    assert!((3..=5).contains(&fired.len()), "about 4 ticks in 9 s: {fired:?}");
    assert!(fired.windows(2).all(|w| w[1] - w[0] == 2000), "{fired:?}");
    let recs = records_named(&c, "tick", 100);
    assert!(recs.len() >= 3, "{}", recs.len());
    assert_eq!(recs[0]["response"]["result"], json!({"k": "v"}));

    // PAUSE stops it, UNPAUSE resumes it; UPDATE changes the payload.
    assert_eq!(feed(&c, "alarm", with(json!({"lifecycleEvent": "PAUSE"}))).status, 200);
    let paused_at = fired_ticks(s, "guest/tick").len();
    std::thread::sleep(Duration::from_secs(3));
    assert!(fired_ticks(s, "guest/tick").len() <= paused_at + 1, "a paused alarm does not fire");
    assert_eq!(feed(&c, "alarm", with(json!({"lifecycleEvent": "UNPAUSE"}))).status, 200);
    let r =
        feed(&c, "alarm", with(json!({"lifecycleEvent": "UPDATE", "trigger_payload": {"k": "w"}})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        feed(&c, "alarm", with(json!({"lifecycleEvent": "UPDATE"}))).json()["response"]["result"]
            ["error"],
        "no updatable parameters were specified"
    );

    // Restart: the schedule goes on, and no tick is ever fired twice.
    std::thread::sleep(Duration::from_secs(3));
    s.restart();
    std::thread::sleep(Duration::from_secs(7));
    let all = fired_ticks(s, "guest/tick");
    let distinct: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a tick fired twice across the restart: {all:?}");
    let since = created.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let after_restart = all.iter().filter(|t| **t > since + 15_000).count();
    assert!(after_restart >= 2, "the schedule survived the restart: {all:?}");
    let c = s.client();
    let r = feed(&c, "alarm", with(json!({"lifecycleEvent": "DELETE"})));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = feed(&c, "alarm", with(json!({"lifecycleEvent": "DELETE"})));
    assert_eq!(
        r.json()["response"]["result"]["error"],
        "could not find the trigger in the database"
    );
    let n = fired_ticks(s, "guest/tick").len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(fired_ticks(s, "guest/tick").len(), n, "a deleted alarm does not fire");

    // once: fires once at its date, then reads as inactive; deleteAfterFire true removes
    // the trigger.
    c.json("PUT", &path("triggers", "once"), json!({}));
    c.json("PUT", &path("rules", "once-r"), json!({"trigger": "once", "action": "noop2"}));
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
        as u64
        + 2_000;
    let r = feed(
        &c,
        "once",
        json!({"lifecycleEvent": "CREATE", "triggerName": "/guest/once", "date": at, "deleteAfterFire": "true"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until(
        "the once alarm's fire",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || (c.get(&path("triggers", "once")).status == 404).then_some(()),
    );
    assert_eq!(fired_ticks(s, "guest/once"), vec![at]);
    // The trigger's one record (the feed action's own record is named `once` too).
    let fires = records_named(&c, "once", 10);
    assert_eq!(fires.iter().filter(|r| r["response"]["result"] == json!({})).count(), 1);
    // interval: checked, stored, read (its ticks are minutes apart).
    c.json("PUT", &path("triggers", "every"), json!({}));
    let r = feed(
        &c,
        "interval",
        json!({"lifecycleEvent": "CREATE", "triggerName": "every", "minutes": "x"}),
    );
    assert_eq!(r.json()["response"]["result"]["error"], "the minutes parameter must be an integer");
    let r = feed(
        &c,
        "interval",
        json!({"lifecycleEvent": "CREATE", "triggerName": "every", "minutes": 5}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = feed(&c, "interval", json!({"lifecycleEvent": "READ", "triggerName": "every"})).json();
    assert_eq!(r["response"]["result"]["config"]["minutes"], 5, "{r}");
}
