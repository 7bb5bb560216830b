//! The reading of manifests into drafts: every key, defaults, and what is reported.

use super::*;
use crate::manifest::tests::{edit, ports};
use crate::manifest::types::{Console, OnFault, Runtime};

fn parse_ok(src: &str) -> (Draft, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let draft = parse(src, &mut diags).expect("TOML");
    (draft, diags)
}

/// The whole-manifest tests' sample, with a second device given as a bare integer port.
fn sample() -> String {
    edit(
        "devices = [{ port = \"0x2f8-0x2ff\" }]",
        "devices = [{ port = \"0x2f8-0x2ff\" }, { port = 0x60 }]",
    )
}

#[test]
fn reads_every_key_with_spans() {
    let src = sample();
    let (d, diags) = parse_ok(&src);
    assert!(diags.is_empty(), "{diags:?}");
    let sys = d.system.unwrap();
    assert_eq!(sys.name.as_ref().unwrap().value, "demo");
    assert_eq!(&src[sys.name.unwrap().span], "\"demo\"");
    assert_eq!(sys.cores.unwrap().value, 4);
    assert_eq!(sys.memory.unwrap().value, 512 << 20);
    assert_eq!(sys.console.as_ref().unwrap().value, Console::Com1);
    let s = &d.sandboxes[0];
    assert_eq!(s.runtime.as_ref().unwrap().value, Runtime::Bare);
    let cores: Vec<u32> = s
        .cores
        .as_ref()
        .unwrap()
        .value
        .iter()
        .map(|c| c.value)
        .collect();
    assert_eq!(cores, [0, 1]);
    assert_eq!(&src[s.cores.as_ref().unwrap().value[1].span.clone()], "1");
    assert_eq!(s.args.len(), 2);
    assert_eq!(s.env.1[0].0.value, "MODE");
    assert_eq!(s.env.1[0].1.value, "fast");
    assert_eq!(s.devices[0].value, ports(0x2f8, 0x2ff));
    assert_eq!(s.devices[1].value, ports(0x60, 0x60));
    let pong = &d.sandboxes[1];
    assert_eq!(pong.on_fault.as_ref().unwrap().value, OnFault::Restart);
    assert_eq!(d.channels[0].size.as_ref().unwrap().value, 64 << 10);
}

#[test]
fn defaults() {
    let src = "[system]\nname='x'\ncores=1\nmemory=1\n[[sandbox]]\nname='a'\napp='a'\ncores=[0]\nmemory=1\n";
    let (d, diags) = parse_ok(src);
    assert!(diags.is_empty());
    let s = &d.sandboxes[0];
    assert_eq!(s.runtime.as_ref().unwrap().value, Runtime::Hermit);
    assert_eq!(s.on_fault.as_ref().unwrap().value, OnFault::HaltSandbox);
    assert_eq!(d.system.unwrap().console.unwrap().value, Console::Com1);
}

#[test]
fn syntax_error_is_located() {
    let mut diags = Vec::new();
    assert!(parse("[system\n", &mut diags).is_none());
    assert_eq!(diags.len(), 1);
    assert!(diags[0].message.starts_with("TOML syntax error"));
    assert!(diags[0].span.is_some());
}

#[test]
fn unknown_key_suggests() {
    let src = "[system]\nname='x'\ncoers=1\nmemory=1\n";
    let (_, diags) = parse_ok(src);
    let unknown = diags
        .iter()
        .find(|d| d.message.contains("unknown key `coers`"))
        .unwrap();
    assert_eq!(unknown.hint.as_deref(), Some("did you mean `cores`?"));
    assert_eq!(&src[unknown.span.clone().unwrap()], "coers");
    assert!(diags
        .iter()
        .any(|d| d.message == "missing key `cores` in `[system]`"));
}

#[test]
fn wrong_types_and_bad_values_all_reported() {
    let src = "[system]\nname=1\ncores='4'\nmemory=true\nconsole='com9'\n";
    let (d, diags) = parse_ok(src);
    assert_eq!(diags.len(), 4, "{diags:#?}");
    let sys = d.system.unwrap();
    assert!(
        sys.name.is_none() && sys.cores.is_none() && sys.memory.is_none() && sys.console.is_none()
    );
}

#[test]
fn missing_system() {
    let (d, diags) = parse_ok("");
    assert!(d.system.is_none());
    assert_eq!(diags[0].message, "missing `[system]` table");
}

#[test]
fn inline_sandbox_tables_are_accepted() {
    let src =
        "system={name='x',cores=1,memory=1}\nsandbox=[{name='a',app='a',cores=[0],memory=1}, 3]\n";
    let (d, diags) = parse_ok(src);
    assert_eq!(d.sandboxes.len(), 1);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert!(diags[0].message.contains("must be a table"));
}

#[test]
fn suggestions() {
    assert_eq!(did_you_mean("coers", ["cores", "memory"]), Some("cores"));
    assert_eq!(
        did_you_mean("halt-sandbx", ["restart", "halt-system", "halt-sandbox"]),
        Some("halt-sandbox")
    );
    assert_eq!(did_you_mean("zzz", ["cores", "memory"]), None);
}
