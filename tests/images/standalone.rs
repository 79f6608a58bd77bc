//! Image actions through a real `hearthd standalone`, as a user meets them: the administrator
//! imports the test image, a stem cell of it is prewarmed, actions are created with the API,
//! the CLI's `--docker` and OpenWhisk's JavaScript client, and run cold, from the stem cell
//! and warm with their records and logs; an image that is not on the host ends in OpenWhisk's
//! pull error; `GET /api/v1` lists the image; `rm` is refused while actions use it; nothing
//! is left behind.

use std::time::Duration;

use serde_json::{json, Value};

use super::common::{admin, ok, test_image, TEST_IMAGE};
use super::harness::*;

/// How long a stem cell may take to appear on a loaded machine; a bound on a wait.
const PREWARM_WAIT: Duration = Duration::from_secs(90);

const CODE: &str = "import os\n\
def main(args):\n    \
    print('ran with', args.get('n'))\n    \
    return {'n': args.get('n'), 'image': os.environ.get('HEARTH_TEST_IMAGE'),\n            \
    'action': os.environ.get('__OW_ACTION_NAME')}\n";

fn create(c: &Client, name: &str, image: &str) {
    let body = json!({"exec": {"kind": "blackbox", "image": image, "code": CODE}});
    let r = c.json("PUT", &format!("/api/v1/namespaces/_/actions/{name}?overwrite=true"), body);
    assert_eq!(r.status, 200, "create {name}: {}", r.text());
    let got = r.json();
    assert_eq!(got["exec"]["kind"], "blackbox", "{got}");
    assert_eq!(got["exec"]["image"], image, "{got}");
}

/// A blocking invoke that must succeed; returns the activation.
fn run(c: &Client, name: &str, n: u64) -> Value {
    let r = c.invoke(name, json!({ "n": n }));
    assert_eq!(r.status, 200, "invoke {name}: {}", r.text());
    let act = r.json();
    assert_eq!(act["response"]["status"], "success", "{act}");
    assert_eq!(
        act["response"]["result"],
        json!({"n": n, "image": "proxy", "action": format!("/guest/{name}")}),
        "{act}"
    );
    let logs = act["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "one line per run, the sentinels removed: {act}");
    assert!(logs[0].as_str().unwrap().ends_with(&format!("stdout: ran with {n}")), "{act}");
    act
}

#[test]
fn image_actions_through_standalone() {
    require_root();
    let image = test_image();
    let mut s = Standalone::start(&format!(
        "memory_budget_mb = 2048\n[[prewarm]]\nimage = \"{TEST_IMAGE}\"\nmemory_mb = 256\ncount = 1\n"
    ));

    // Before the import: the action is stored (OpenWhisk checks no image at create) and its
    // run ends in OpenWhisk's pull error, with a record.
    let c = s.client();
    create(&c, "early", TEST_IMAGE);
    let r = c.invoke("early", json!({}));
    assert_eq!(r.status, 502, "{}", r.text());
    let act = r.json();
    assert_eq!(act["response"]["status"], "action developer error", "{act}");
    let error = act["response"]["result"]["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("Failed to pull container image '{TEST_IMAGE}'.")),
        "{error}"
    );

    // The administrator imports it; the restarted server prewarms a stem cell of it.
    let digest = ok(admin(
        &s.data_dir(),
        &["import", TEST_IMAGE, image.join("image.oci.tar").to_str().unwrap()],
    ));
    let digest = digest.split_whitespace().next().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    s.restart();
    s.wait_stem_cells(1, PREWARM_WAIT);
    let c = s.client();

    // The info route lists it.
    let info = c.get("/api/v1").json();
    let listed = info["images"].as_array().unwrap();
    assert!(listed.iter().any(|i| i["digest"] == digest.as_str()), "{info}");

    // The earlier action now runs: from the stem cell (an init), then warm (none).
    let first = run(&c, "early", 1);
    assert!(annotation(&first, "initTime").is_some(), "{first}");
    let warm = run(&c, "early", 2);
    assert!(annotation(&warm, "initTime").is_none(), "{warm}");
    s.wait_stem_cells(1, PREWARM_WAIT);

    // The CLI's --docker, as wsk sends it, with a file of code; the same image by another
    // spelling of its name.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("main.py");
    std::fs::write(&file, CODE).unwrap();
    let (code, out, err) = hearth_cli(
        &s.url(),
        &[
            "action",
            "create",
            "cli-image",
            file.to_str().unwrap(),
            "--docker",
            &format!("docker.io/{TEST_IMAGE}"),
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    run(&c, "cli-image", 3);

    // OpenWhisk's own client.
    let out = openwhisk_client("images.js", &s.url(), GUEST);
    assert!(out.contains("images ok"), "{out}");

    // An image no host has.
    create(&c, "nowhere", "hearth-test/absent:9");
    let r = c.invoke("nowhere", json!({}));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("Failed to pull container image 'hearth-test/absent:9'."));

    // The image is in use: rm is refused, naming an action; the server keeps running it.
    let out = admin(&s.data_dir(), &["rm", TEST_IMAGE]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("guest/early") || err.contains("guest/cli-image"), "{err}");
    run(&c, "early", 4);

    s.stop();
}
