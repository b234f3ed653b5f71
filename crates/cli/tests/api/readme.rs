//! The README's examples run as written. Every ```sh block, in order, is one bash script run
//! against a fresh `contextiq serve` (the binary cargo built for this test, on the PATH as
//! `contextiq`), from a directory whose `data/` is the server's data directory, as it is for
//! someone who ran `./scripts/serve.sh` in the repository. `localhost:8000` becomes the
//! server's port. Each `# => {...}` comment must match the last JSON the commands before it
//! printed: every key and value shown is in the answer, `"..."`, `[...]` and `{...}` stand for
//! any value, and a trailing `, ...` in an array allows more elements (objects always may have
//! more keys). No command may print an error answer (problem+json) the README does not show.
//!
//! A block is left out only when the line before its fence is [`SKIP_MARKER`]: the set-up
//! commands (this test does what `./scripts/serve.sh` does, and is run by `./scripts/test.sh`)
//! and the processes of a distributed deployment.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{backend_env, binary, model_dir, test_database_url};
use crate::process::ServerProcess;

const README: &str = include_str!("../../../../README.md");

/// The line before a ```sh fence that keeps the block out of this test.
const SKIP_MARKER: &str = "<!-- README test: not run -->";

/// The blocks the README marks as not run; more needs a reason in the README and here.
const N_SKIPPED: usize = 3;

/// Stands for any value in an expected answer.
const ANY: &str = "\u{1}any";
/// The last element of an expected array that may go on.
const MORE: &str = "\u{1}more";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_examples_run_as_written() {
    let blocks = sh_blocks(README);
    let n_skipped = blocks.iter().filter(|block| block.skipped).count();
    assert_eq!(n_skipped, N_SKIPPED, "blocks marked {SKIP_MARKER}");
    let work_dir = tempfile::tempdir().unwrap();
    let data_dir = work_dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    test_database_url(&data_dir).await;
    let server = ServerProcess::start_with(&data_dir, &[]);
    let port = server.address.rsplit(':').next().unwrap().to_owned();

    let (script, expectations) = script_of(&blocks, &port);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(binary().parent().unwrap().to_owned()).chain(std::env::split_paths(&path)),
    )
    .unwrap();
    let mut bash = tokio::process::Command::new("bash");
    bash.arg("-c")
        .arg(&script)
        .current_dir(work_dir.path())
        .envs(backend_env(&data_dir))
        .env("PATH", path)
        .env("EMBEDDING_MODEL_PATH", model_dir())
        .env_remove("CONTEXTIQ_API_KEY")
        .kill_on_drop(true);
    // Against a hang (a job that never finishes), not a measurement.
    let output =
        tokio::time::timeout(Duration::from_secs(600), bash.output()).await.expect("the examples finish").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the examples failed ({}); output:\n{stdout}\nscript:\n{script}", output.status);

    let segments = segments_of(&stdout, expectations.len());
    let mut checked = Vec::new();
    for ((expected, shown), segment) in expectations.iter().zip(&segments) {
        let actual = json_values(segment).pop().unwrap_or_else(|| panic!("no JSON before `# => {shown}`:\n{segment}"));
        assert!(matches(expected, &actual), "the README shows\n  {shown}\nthe server answered\n  {actual}");
        checked.push(actual);
    }
    for segment in &segments {
        for value in json_values(segment) {
            let is_problem = value["type"].as_str().is_some_and(|kind| kind.starts_with("urn:contextiq:problem:"));
            assert!(!is_problem || checked.contains(&value), "an error the README does not show: {value}\n{segment}");
        }
    }
    drop(server);
}

struct Block {
    text: String,
    skipped: bool,
}

/// The ```sh blocks of a Markdown text, in order.
fn sh_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut previous = "";
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("```") {
            let is_sh = line.trim() == "```sh";
            let skipped = previous.trim() == SKIP_MARKER;
            let text: Vec<&str> = lines.by_ref().take_while(|line| !line.trim_start().starts_with("```")).collect();
            if is_sh {
                blocks.push(Block { text: text.join("\n"), skipped });
            }
            previous = "";
            continue;
        }
        previous = line;
    }
    blocks
}

/// The script of every block not skipped, with a marker line printed at each `# =>` comment;
/// and the expectations, parsed, with their text as shown.
fn script_of(blocks: &[Block], port: &str) -> (String, Vec<(Value, String)>) {
    // Aliases are for interactive shells: the README defines one, as a reader's shell would take it.
    let mut script = String::from("set -euo pipefail\nshopt -s expand_aliases\nexec 2>&1\n");
    let mut expectations = Vec::new();
    for block in blocks.iter().filter(|block| !block.skipped) {
        let text = block.text.replace("localhost:8000", &format!("localhost:{port}"));
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            let Some(shown) = line.trim_start().strip_prefix("# =>") else {
                script.push_str(line);
                script.push('\n');
                continue;
            };
            // An answer may go on over comment lines until its brackets close.
            let mut shown = shown.trim().to_owned();
            while depth(&shown) > 0 {
                let next = lines.next().expect("an expected answer ends in its block");
                shown.push(' ');
                shown.push_str(next.trim_start().trim_start_matches('#').trim());
            }
            script.push_str(&format!("echo '{}'\n", marker(expectations.len())));
            expectations.push((expected_value(&shown), shown));
        }
    }
    (script, expectations)
}

fn marker(idx: usize) -> String {
    format!("<<< README check {idx} >>>")
}

/// Brackets opened and not closed, outside strings.
fn depth(text: &str) -> i32 {
    let (mut depth, mut in_string, mut escaped) = (0, false, false);
    for c in text.chars() {
        match (in_string, c) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (true, '"') => in_string = false,
            (false, '"') => in_string = true,
            (false, '{' | '[') => depth += 1,
            (false, '}' | ']') => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// An expected answer as JSON, its elisions replaced by [`ANY`] and [`MORE`].
fn expected_value(shown: &str) -> Value {
    // The sentinels as JSON strings.
    let (any, more) = (r#""\u0001any""#, r#""\u0001more""#);
    let json = shown
        .replace("[...]", any)
        .replace("{...}", any)
        .replace(r#""...""#, any)
        .replace(", ...]", &format!(", {more}]"))
        .replace(", ...}", "}");
    serde_json::from_str(&json).unwrap_or_else(|err| panic!("the README's `# => {shown}` is not JSON ({err}): {json}"))
}

/// Whether `actual` has everything `expected` shows.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(any), _) if any == ANY => true,
        (Value::Object(expected), Value::Object(actual)) => {
            expected.iter().all(|(key, value)| actual.get(key).is_some_and(|actual| matches(value, actual)))
        }
        (Value::Array(expected), Value::Array(actual)) => {
            let (shown, more) = match expected.last() {
                Some(Value::String(last)) if last == MORE => (&expected[..expected.len() - 1], true),
                _ => (&expected[..], false),
            };
            let lengths_fit = if more { actual.len() >= shown.len() } else { actual.len() == shown.len() };
            lengths_fit && shown.iter().zip(actual).all(|(expected, actual)| matches(expected, actual))
        }
        _ => expected == actual,
    }
}

/// The output before each marker, since the one before it (`n` segments, then the rest).
fn segments_of(output: &str, n: usize) -> Vec<String> {
    let mut segments = Vec::with_capacity(n + 1);
    let mut rest = output;
    for idx in 0..n {
        let marker = format!("{}\n", marker(idx));
        let (before, after) = rest.split_once(&marker).unwrap_or_else(|| panic!("no check {idx} in:\n{output}"));
        segments.push(before.to_owned());
        rest = after;
    }
    segments.push(rest.to_owned());
    segments
}

/// The JSON values a command output holds: curl prints answers without a line break, so one
/// line may hold several; lines of other text are skipped.
fn json_values(output: &str) -> Vec<Value> {
    let mut values = Vec::new();
    for line in output.lines().filter(|line| line.trim_start().starts_with(['{', '['])) {
        let stream = serde_json::Deserializer::from_str(line.trim()).into_iter::<Value>();
        values.extend(stream.map_while(Result::ok));
    }
    values
}

#[test]
fn expected_answers_match_loosely() {
    let check = |shown: &str, actual: Value, expected: bool| {
        assert_eq!(matches(&expected_value(shown), &actual), expected, "{shown} against {actual}");
    };
    let session = serde_json::json!({"id": "0193", "scope": {"user_id": "u1"}, "events": [1, 2], "n": 0});
    check(r#"{"id": "...", "scope": {"user_id": "u1"}, ...}"#, session.clone(), true);
    check(r#"{"events": [...], "n": 0}"#, session.clone(), true);
    check(r#"{"events": [1, ...]}"#, session.clone(), true);
    check(r#"{"events": [1]}"#, session.clone(), false);
    check(r#"{"scope": {...}, "n": 1}"#, session.clone(), false);
    check(r#"{"scope": {"user_id": "u2"}, ...}"#, session.clone(), false);
    check(r#"{"missing": "..."}"#, session, false);
    assert_eq!(json_values("created key x\n{\"a\":1}{\"b\":2}\nid  name\n"), [json!({"a": 1}), json!({"b": 2})]);
    assert_eq!(depth(r#"{"a": "}{", "b": [1, "#), 2);
}
