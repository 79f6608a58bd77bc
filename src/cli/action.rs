//! `hearth action create|update|get|list|delete|invoke`.
//!
//! Owns the request bodies for actions (exec, limits, parameters, annotations, in OpenWhisk's
//! shape), kind inference from the file name, and the printing of action answers. The body
//! builders are pure functions, tested without a server. It must never validate what the
//! server validates (kinds, limit ranges): the server is the one source of those rules.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::error::CliError;
use super::http::{Client, Response, Subject};
use super::output::{self, Output};
use super::params::{self, EntityRef};
use super::{ActionCommand, InvokeArgs, PageArgs, SpecArgs};
use crate::model::{BLACKBOX, NATIVE_IMAGE};

/// The kind wsk infers from an extension; `.zip` has none because an archive can hold any
/// runtime's code.
pub fn infer_kind(file: &Path, kind: Option<&str>) -> Result<String, CliError> {
    if let Some(k) = kind {
        return Ok(k.to_owned());
    }
    match file.extension().and_then(|e| e.to_str()) {
        Some("py") => Ok("python:3".to_owned()),
        Some("js") => Ok("nodejs:20".to_owned()),
        Some("zip") => Err(CliError::Usage(format!(
            "{}: a .zip archive needs --kind (python:3 or nodejs:20)",
            file.display()
        ))),
        _ => Err(CliError::Usage(format!(
            "{}: cannot tell the kind from the file name; pass --kind (python:3 or nodejs:20)",
            file.display()
        ))),
    }
}

/// A file's code as an exec's `code` and `binary`: a zip base64-encoded, text as it is.
fn encoded_code(file: &Path) -> Result<(String, bool), CliError> {
    let (bytes, is_zip) = read_code(file)?;
    if is_zip {
        return Ok((base64::engine::general_purpose::STANDARD.encode(&bytes), true));
    }
    let text = String::from_utf8(bytes).map_err(|_| CliError::BadFile {
        path: file.to_owned(),
        message: "the code is not UTF-8 text (archives must end in .zip)".to_owned(),
    })?;
    Ok((text, false))
}

/// The bytes of an action's code file, and whether it is a zip (by its name, as wsk decides).
fn read_code(file: &Path) -> Result<(Vec<u8>, bool), CliError> {
    let bytes = std::fs::read(file).map_err(|source| CliError::ReadFile {
        what: "action file",
        path: file.to_owned(),
        source,
    })?;
    Ok((bytes, file.extension().and_then(|e| e.to_str()) == Some("zip")))
}

/// The `exec` object for a code file: text as it is, a zip base64-encoded with `binary`.
pub fn exec_from_file(
    file: &Path,
    kind: Option<&str>,
    main: Option<&str>,
) -> Result<Value, CliError> {
    let kind = infer_kind(file, kind)?;
    let (code, binary) = encoded_code(file)?;
    let mut exec = json!({ "kind": kind, "code": code, "binary": binary });
    if let Some(m) = main {
        exec["main"] = json!(m);
    }
    Ok(exec)
}

/// The `exec` of `--native` (kind blackbox with OpenWhisk's skeleton image, as wsk sends it):
/// a zip as it is; a text file (a script) as text, as wsk sends it; any other file (a compiled
/// program, which wsk would garble as text) zipped as `exec`, executable.
pub fn native_exec_from_file(file: &Path) -> Result<Value, CliError> {
    let (bytes, is_zip) = read_code(file)?;
    let base64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (code, binary) = if is_zip {
        (base64(&bytes), true)
    } else {
        match String::from_utf8(bytes) {
            Ok(text) => (text, false),
            Err(e) => {
                let zip = zip_as_exec(e.as_bytes()).map_err(|err| CliError::BadFile {
                    path: file.to_owned(),
                    message: format!("cannot zip it as exec: {err}"),
                })?;
                (base64(&zip), true)
            }
        }
    };
    Ok(json!({ "kind": BLACKBOX, "image": NATIVE_IMAGE, "code": code, "binary": binary }))
}

/// The `exec` of `--docker IMAGE [FILE]`, as wsk sends it: kind blackbox with the image, and
/// the file's code (a zip base64-encoded, anything else as text) when one is given.
pub fn docker_exec(
    image: &str,
    file: Option<&Path>,
    main: Option<&str>,
) -> Result<Value, CliError> {
    let mut exec = json!({ "kind": BLACKBOX, "image": image });
    if let Some(file) = file {
        let (code, binary) = encoded_code(file)?;
        exec["code"] = json!(code);
        exec["binary"] = json!(binary);
    }
    if let Some(main) = main {
        exec["main"] = json!(main);
    }
    Ok(exec)
}

/// A zip whose one entry is `exec` (mode 0755) holding `bytes`.
fn zip_as_exec(bytes: &[u8]) -> zip::result::ZipResult<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    w.start_file("exec", options)?;
    w.write_all(bytes)?;
    Ok(w.finish()?.into_inner())
}

/// The `exec` of `--sequence a,b,c`: each component fully qualified as wsk sends it
/// (`/_/a`, `/_/pkg/b`, `/ns/c`; the server resolves `_` to the creator's namespace).
pub fn sequence_exec(components: &[String]) -> Result<Value, CliError> {
    let paths = components
        .iter()
        .map(|c| EntityRef::parse(c.trim()).map(|r| r.path()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "kind": "sequence", "components": paths }))
}

/// The PUT body. Only what was given is sent, so an update keeps every omitted setting
/// (the server merges, as OpenWhisk does).
pub fn action_body(exec: Option<Value>, spec: &SpecArgs) -> Result<Value, CliError> {
    let mut body = Map::new();
    if let Some(e) = exec {
        body.insert("exec".into(), e);
    }
    let mut limits = Map::new();
    for (key, value) in [
        ("memory", spec.memory),
        ("timeout", spec.timeout),
        ("logs", spec.logsize),
        ("concurrency", spec.concurrency),
    ] {
        if let Some(v) = value {
            limits.insert(key.into(), json!(v));
        }
    }
    if !limits.is_empty() {
        body.insert("limits".into(), Value::Object(limits));
    }
    if !spec.params.param.is_empty() || spec.params.param_file.is_some() {
        let p = params::collect(
            &spec.params.param,
            spec.params.param_file.as_deref(),
            "parameter file",
        )?;
        body.insert("parameters".into(), serde_json::to_value(p).unwrap_or_default());
    }
    if !spec.annotation.is_empty() || spec.annotation_file.is_some() {
        let a =
            params::collect(&spec.annotation, spec.annotation_file.as_deref(), "annotation file")?;
        body.insert("annotations".into(), serde_json::to_value(a).unwrap_or_default());
    }
    Ok(Value::Object(body))
}

/// The kind shown in a list: `exec.kind` when the server sends it, else OpenWhisk's `exec`
/// annotation (what OpenWhisk's list answers carry).
fn kind_of(entry: &Value) -> String {
    entry
        .pointer("/exec/kind")
        .and_then(Value::as_str)
        .or_else(|| {
            entry.get("annotations").and_then(Value::as_array).and_then(|a| {
                a.iter()
                    .find(|kv| kv.get("key").and_then(Value::as_str) == Some("exec"))
                    .and_then(|kv| kv.get("value").and_then(Value::as_str))
            })
        })
        .unwrap_or("-")
        .to_owned()
}

/// Rows of `hearth action list`: name, kind, version, last update.
pub fn list_rows(entries: &[Value]) -> Vec<Vec<String>> {
    entries
        .iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
            vec![
                format!("/{}/{}", s("namespace"), s("name")),
                kind_of(e),
                s("version"),
                e.get("updated")
                    .and_then(Value::as_u64)
                    .map(output::datetime)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect()
}

/// What `action list` lists: nothing (the caller's namespace), `package`, `/namespace` or
/// `/namespace/package`.
pub fn list_scope(scope: Option<&str>) -> Result<(String, Option<String>), CliError> {
    let Some(s) = scope else { return Ok(("_".into(), None)) };
    let bad = || {
        CliError::Usage(format!(
            "invalid list scope {s:?}: package, /namespace or /namespace/package"
        ))
    };
    let parts: Vec<&str> = s.trim_end_matches('/').split('/').collect();
    let (ns, pkg) = match parts.as_slice() {
        [pkg] => ("_", Some(*pkg)),
        ["", ns] => (*ns, None),
        ["", ns, pkg] => (*ns, Some(*pkg)),
        _ => return Err(bad()),
    };
    for n in std::iter::once(ns).chain(pkg).filter(|n| *n != "_") {
        crate::model::EntityName::parse(n).map_err(|_| bad())?;
    }
    Ok((ns.to_owned(), pkg.map(str::to_owned)))
}

/// Runs one action command.
pub fn run(
    client: &Client,
    output: Output,
    command: ActionCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        ActionCommand::Create { name, file, spec } => {
            put(client, output, &name, file.as_deref(), &spec, false, out)
        }
        ActionCommand::Update { name, file, spec } => {
            put(client, output, &name, file.as_deref(), &spec, true, out)
        }
        ActionCommand::Get { name, code, url } => {
            get(client, output, &name, code && !url, url, out)
        }
        ActionCommand::List { scope, page } => list(client, output, scope.as_deref(), page, out),
        ActionCommand::Delete { name } => delete(client, output, &name, out),
        ActionCommand::Invoke(args) => invoke(client, output, &args, out),
    }
}

fn subject(r: &EntityRef) -> Subject<'_> {
    Subject { kind: "action", name: r.name.as_str() }
}

fn segments(r: &EntityRef) -> Vec<&str> {
    r.segments("actions")
}

fn put(
    client: &Client,
    output: Output,
    name: &str,
    file: Option<&Path>,
    spec: &SpecArgs,
    overwrite: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let r = EntityRef::parse(name)?;
    let exec = match file {
        _ if spec.docker.is_some() => match &spec.docker {
            Some(image) => Some(docker_exec(image, file, spec.main.as_deref())?),
            None => None,
        },
        None if !spec.sequence.is_empty() => Some(sequence_exec(&spec.sequence)?),
        Some(f) if spec.native => Some(native_exec_from_file(f)?),
        Some(f) => Some(exec_from_file(f, spec.kind.as_deref(), spec.main.as_deref())?),
        None if spec.kind.is_some() || spec.main.is_some() || spec.native => {
            return Err(CliError::Usage(
                "--kind, --main and --native need the code FILE too".into(),
            ))
        }
        None => None,
    };
    let mut body = action_body(exec, spec)?;
    if let Some(w) = &spec.web {
        super::api::apply_web(client, &segments(&r), w, overwrite, &mut body)?;
    }
    let resp = client.request(
        Method::PUT,
        &segments(&r),
        &[("overwrite", overwrite.to_string())],
        Some(&body),
    )?;
    if !resp.is_success() {
        return Err(resp.error(Some(subject(&r))));
    }
    if output.json {
        return Ok(output.raw(out, &resp.text())?);
    }
    let verb = if overwrite { "updated" } else { "created" };
    Ok(output.ok(out, &format!("{verb} action {}", r.short()))?)
}

fn get(
    client: &Client,
    output: Output,
    name: &str,
    code: bool,
    url: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let r = EntityRef::parse(name)?;
    let resp = client.request(Method::GET, &segments(&r), &[("code", code.to_string())], None)?;
    if !resp.is_success() {
        return Err(resp.error(Some(subject(&r))));
    }
    if url {
        return Ok(writeln!(out, "{}", super::api::web_url(client, &resp.json("action get")?))?);
    }
    if output.json {
        return Ok(output.raw(out, &resp.text())?);
    }
    let v = resp.json("action get")?;
    output.ok(out, &format!("got action {}", r.short()))?;
    Ok(output.pretty(out, &v)?)
}

/// `hearth action list [package|/namespace[/package]]`: a namespace's actions, or a
/// package's (`GET .../actions/{package}/`, the trailing slash as wsk sends it).
fn list(
    client: &Client,
    output: Output,
    scope: Option<&str>,
    page: PageArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let query = [("limit", page.limit.to_string()), ("skip", page.skip.to_string())];
    let (namespace, package) = list_scope(scope)?;
    let mut segs = vec!["namespaces", namespace.as_str(), "actions"];
    if let Some(p) = &package {
        // An empty last segment makes the trailing slash.
        segs.extend([p.as_str(), ""]);
    }
    let resp = client.request(Method::GET, &segs, &query, None)?;
    if !resp.is_success() {
        return Err(resp.error(None));
    }
    if output.json {
        return Ok(output.raw(out, &resp.text())?);
    }
    let v = resp.json("action list")?;
    let entries = v.as_array().ok_or_else(|| CliError::BadResponse {
        what: "action list".into(),
        message: "expected a JSON array".into(),
    })?;
    Ok(write!(
        out,
        "{}",
        output::table(&["NAME", "KIND", "VERSION", "UPDATED"], &list_rows(entries))
    )?)
}

fn delete(
    client: &Client,
    output: Output,
    name: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let r = EntityRef::parse(name)?;
    let resp = client.request(Method::DELETE, &segments(&r), &[], None)?;
    if !resp.is_success() {
        return Err(resp.error(Some(subject(&r))));
    }
    if output.json {
        return Ok(output.raw(out, &resp.text())?);
    }
    Ok(output.ok(out, &format!("deleted action {}", r.short()))?)
}

/// The activation id of an invoke answer: the header OpenWhisk always sets, else the body.
fn activation_id(resp: &Response, body: Option<&Value>) -> String {
    resp.activation_id
        .clone()
        .or_else(|| {
            body.and_then(|b| b.get("activationId")).and_then(Value::as_str).map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn invoke(
    client: &Client,
    output: Output,
    args: &InvokeArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let r = EntityRef::parse(&args.name)?;
    let payload = params::to_object(params::collect(
        &args.params.param,
        args.params.param_file.as_deref(),
        "parameter file",
    )?);
    let blocking = args.blocking || args.result;
    let query = [("blocking", blocking.to_string()), ("result", args.result.to_string())];
    let resp = client.request(Method::POST, &segments(&r), &query, Some(&payload))?;
    let path = r.path();
    match resp.status {
        StatusCode::OK | StatusCode::ACCEPTED | StatusCode::BAD_GATEWAY => {}
        _ => return Err(resp.error(Some(subject(&r)))),
    }
    let body = resp.json("action invoke")?;
    let id = activation_id(&resp, Some(&body));
    if output.json {
        output.raw(out, &resp.text())?;
    }
    match resp.status {
        StatusCode::ACCEPTED if !blocking => {
            output.ok(out, &format!("invoked {path} with id {id}"))?;
            Ok(())
        }
        StatusCode::ACCEPTED => {
            output.ok(
                out,
                &format!("invoked {path}, but the request has not yet finished, with id {id}"),
            )?;
            Err(CliError::Pending { name: path, activation_id: id })
        }
        status => {
            if !output.json {
                if !args.result {
                    output.ok(out, &format!("invoked {path} with id {id}"))?;
                }
                output.pretty(out, &body)?;
            }
            if status == StatusCode::BAD_GATEWAY {
                // With result=true the body is the bare result; the status is then only
                // known to be a failure of the action, which is what exit code 2 says.
                let status = body
                    .pointer("/response/status")
                    .and_then(Value::as_str)
                    .unwrap_or("application or developer error")
                    .to_owned();
                return Err(CliError::ActionFailed { name: path, status, activation_id: id });
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_components_are_sent_fully_qualified() {
        let names = ["a", "pkg/b", "/other/c", "/whisk.system/utils/echo"].map(String::from);
        assert_eq!(
            sequence_exec(&names).unwrap(),
            json!({"kind":"sequence","components":["/_/a","/_/pkg/b","/other/c","/whisk.system/utils/echo"]})
        );
        assert!(matches!(sequence_exec(&["/x".to_owned()]), Err(CliError::Usage(_))));
    }
    use crate::cli::ParamArgs;
    use std::path::PathBuf;

    #[test]
    fn kinds_from_extensions() {
        assert_eq!(infer_kind(Path::new("a/hello.py"), None).unwrap(), "python:3");
        assert_eq!(infer_kind(Path::new("hello.js"), None).unwrap(), "nodejs:20");
        assert_eq!(infer_kind(Path::new("hello.js"), Some("nodejs:18")).unwrap(), "nodejs:18");
        assert_eq!(infer_kind(Path::new("bundle.zip"), Some("python:3")).unwrap(), "python:3");
        let e = infer_kind(Path::new("bundle.zip"), None).unwrap_err();
        assert!(matches!(e, CliError::Usage(_)) && e.to_string().contains("--kind"), "{e}");
        assert!(infer_kind(Path::new("dir.py/hello"), None).is_err());
        assert!(infer_kind(Path::new("hello.rb"), None).is_err());
    }

    #[test]
    fn zip_goes_base64_with_binary() {
        let dir = tempfile::tempdir().unwrap();
        let z = dir.path().join("a.zip");
        std::fs::write(&z, [0x50, 0x4b, 0x03, 0x04, 0xff]).unwrap();
        let e = exec_from_file(&z, Some("python:3"), Some("handler")).unwrap();
        assert_eq!(e, json!({"kind":"python:3","code":"UEsDBP8=","binary":true,"main":"handler"}));
        let py = dir.path().join("a.py");
        std::fs::write(&py, "def main(a):\n  return a\n").unwrap();
        let e = exec_from_file(&py, None, None).unwrap();
        assert_eq!(
            e,
            json!({"kind":"python:3","code":"def main(a):\n  return a\n","binary":false})
        );
        let bin = dir.path().join("b.js");
        std::fs::write(&bin, [0xff, 0xfe]).unwrap();
        assert!(matches!(exec_from_file(&bin, None, None), Err(CliError::BadFile { .. })));
        assert!(matches!(
            exec_from_file(&dir.path().join("none.py"), None, None),
            Err(CliError::ReadFile { .. })
        ));
    }

    #[test]
    fn docker_images_as_wsk_sends_them() {
        assert_eq!(
            docker_exec("hearth-test/proxy:1", None, None).unwrap(),
            json!({"kind":"blackbox","image":"hearth-test/proxy:1"})
        );
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("a.py");
        std::fs::write(&script, "def main(a):\n  return a\n").unwrap();
        assert_eq!(
            docker_exec("x/y:2", Some(&script), Some("go")).unwrap(),
            json!({"kind":"blackbox","image":"x/y:2","code":"def main(a):\n  return a\n",
                   "binary":false,"main":"go"})
        );
    }

    #[test]
    fn native_files_as_wsk_sends_them() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\necho '{}'\n").unwrap();
        assert_eq!(
            native_exec_from_file(&script).unwrap(),
            json!({"kind":"blackbox","image":"openwhisk/dockerskeleton",
                   "code":"#!/bin/sh\necho '{}'\n","binary":false})
        );
        let z = dir.path().join("a.zip");
        std::fs::write(&z, [0x50, 0x4b, 0x03, 0x04, 0xff]).unwrap();
        let e = native_exec_from_file(&z).unwrap();
        assert_eq!((e["code"].as_str(), e["binary"].as_bool()), (Some("UEsDBP8="), Some(true)));
        // A compiled program is zipped as an executable `exec`.
        let prog = dir.path().join("prog");
        std::fs::write(&prog, b"\x7fELF\xff\x00").unwrap();
        let e = native_exec_from_file(&prog).unwrap();
        assert_eq!(e["binary"], true);
        let zip =
            base64::engine::general_purpose::STANDARD.decode(e["code"].as_str().unwrap()).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let mut entry = archive.by_name("exec").unwrap();
        assert_eq!(entry.unix_mode().unwrap() & 0o777, 0o755);
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        assert_eq!(data, b"\x7fELF\xff\x00");
    }

    #[test]
    fn body_sends_only_what_was_given() {
        assert_eq!(action_body(None, &SpecArgs::default()).unwrap(), json!({}));
        let spec = SpecArgs {
            memory: Some(128),
            logsize: Some(0),
            concurrency: Some(200),
            params: ParamArgs {
                param: vec!["name".into(), "Ada".into(), "n".into(), "1".into()],
                param_file: None,
            },
            annotation: vec!["description".into(), "greets".into()],
            ..SpecArgs::default()
        };
        let b = action_body(Some(json!({"kind":"nodejs:20"})), &spec).unwrap();
        assert_eq!(
            b,
            json!({
                "exec": {"kind":"nodejs:20"},
                "limits": {"memory":128, "logs":0, "concurrency":200},
                "parameters": [{"key":"name","value":"Ada"},{"key":"n","value":1}],
                "annotations": [{"key":"description","value":"greets"}],
            })
        );
        let spec = SpecArgs {
            params: ParamArgs {
                param: vec![],
                param_file: Some(PathBuf::from("/nonexistent/p.json")),
            },
            ..SpecArgs::default()
        };
        assert!(matches!(action_body(None, &spec), Err(CliError::ReadFile { .. })));
    }

    #[test]
    fn list_rows_read_both_kind_shapes() {
        let entries = [
            json!({"namespace":"guest","name":"a","version":"0.0.2","exec":{"kind":"python:3"},"updated":0}),
            json!({"namespace":"guest","name":"b","version":"0.0.1","annotations":[{"key":"exec","value":"nodejs:20"}]}),
        ];
        let rows = list_rows(&entries);
        assert_eq!(rows[0], ["/guest/a", "python:3", "0.0.2", "1970-01-01 00:00:00"]);
        assert_eq!(rows[1], ["/guest/b", "nodejs:20", "0.0.1", "-"]);
    }
}
