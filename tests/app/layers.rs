//! The layers point one way (README, code tour): no module of `src/` names a module of a layer
//! above its own. Read from the sources, so a new upward import fails here with its file and line.

use std::path::{Path, PathBuf};

/// The layer of a top-level module of the crate: lower numbers are lower layers.
fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "domain" => 0,
        "config" | "telemetry" | "tasks" | "auth" => 1,
        "db" => 2,
        "stripe" => 3,
        "error" => 4,
        "billing" => 5,
        "web" => 6,
        "startup" | "cli" | "main" | "lib" => 7,
        _ => return None,
    })
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// Every `crate::<module>` a line of code names (comments left out).
fn named(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices("crate::")
        .filter(|(at, _)| {
            // `msr_stripe_sim::…` or `other_crate::` are other crates, not `crate::`.
            let before = code[..*at].chars().last();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(at, _)| {
            code[at + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "the sources were not found");
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let own =
            layer(&module).unwrap_or_else(|| panic!("{module} has no layer: add it to `layer`"));
        for (number, line) in std::fs::read_to_string(file).unwrap().lines().enumerate() {
            for target in named(line) {
                let Some(theirs) = layer(&target) else {
                    continue;
                };
                if theirs > own {
                    upward.push(format!(
                        "{}:{}: {module} (layer {own}) names crate::{target} (layer {theirs})",
                        file.strip_prefix(&src).unwrap().display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layers:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_layer_check_sees_an_upward_import() {
    assert_eq!(
        named("use crate::web::AppState; // crate::billing"),
        ["web"]
    );
    assert_eq!(
        named("    msr_stripe_sim::crate_like::x"),
        Vec::<String>::new()
    );
    assert!(layer("web") > layer("billing") && layer("billing") > layer("db"));
}

#[test]
fn only_db_writes_sql_or_branches_on_the_database_backend() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let branches: Vec<String> = files
        .iter()
        .filter(|f| module_of(&src, f) != "db")
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines()
                .enumerate()
                .filter(|(_, l)| {
                    let code = l.split("//").next().unwrap_or("");
                    code.contains("Backend::") || code.contains("sqlx::query")
                })
                .map(|(n, _)| format!("{}:{}", f.strip_prefix(&src).unwrap().display(), n + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        branches.is_empty(),
        "SQL and backend branches belong in db/: {branches:?}"
    );
}
