//! The workspace's test layout (ARCHITECTURE.md, "Tests"): each crate has one integration-test binary,
//! `<crate>/tests/<crate>/main.rs`, and every `.rs` file under `<crate>/tests/` is one of its modules.
//! A file directly under `tests/` would be linked as one more binary (link time dominates a build on
//! 2 cores), and a file no `mod` declares is never compiled: its tests silently do not run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the workspace root")
        .to_path_buf()
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.insert(path);
        }
    }
}

/// The names of the out-of-line modules `file` declares (`mod name;`, with or without `pub`).
fn declared_modules(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .filter_map(|l| {
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{}: unexpected module declaration {l:?}",
                file.display()
            );
            Some(name.to_string())
        })
        .collect()
}

/// The files of the module tree rooted at `root`, resolved like rustc does (no `#[path]`).
fn module_tree(root: &Path, out: &mut BTreeSet<PathBuf>) {
    out.insert(root.to_path_buf());
    let stem = root.file_stem().unwrap().to_str().unwrap();
    // main.rs and mod.rs own their directory; name.rs owns name/.
    let dir = if stem == "main" || stem == "mod" {
        root.parent().unwrap().to_path_buf()
    } else {
        root.parent().unwrap().join(stem)
    };
    for name in declared_modules(root) {
        let flat = dir.join(format!("{name}.rs"));
        let nested = dir.join(&name).join("mod.rs");
        let file = match (flat.exists(), nested.exists()) {
            (true, false) => flat,
            (false, true) => nested,
            _ => panic!(
                "{}: `mod {name};` needs exactly one of {} and {}",
                root.display(),
                flat.display(),
                nested.display()
            ),
        };
        module_tree(&file, out);
    }
}

#[test]
fn every_crate_has_one_test_binary_that_declares_every_test_file() {
    let root = workspace_root();
    let mut crates = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let krate = entry.unwrap().path();
        let tests = krate.join("tests");
        if !krate.join("Cargo.toml").exists() || !tests.is_dir() {
            continue;
        }
        crates += 1;
        let name = krate.file_name().unwrap().to_str().unwrap();
        let main = tests.join(name).join("main.rs");
        assert!(main.exists(), "{} is missing", main.display());
        let mut all = BTreeSet::new();
        rust_files(&tests, &mut all);
        let mut reached = BTreeSet::new();
        module_tree(&main, &mut reached);
        let orphans: Vec<_> = all.difference(&reached).map(|p| p.display()).collect();
        assert!(
            orphans.is_empty(),
            "not part of {}'s test binary ({}): {orphans:?}; declare each with `mod name;` in its \
             family's parent, or move it under tests/{name}/",
            name,
            main.display()
        );
    }
    assert!(crates >= 7, "found the tests of only {crates} crates");
}
