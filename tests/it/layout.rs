//! The runtime crate's shape: no import cycle between its top-level modules (each folder or
//! file under `taskflow/src`), so that each concept can be read, and changed, on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules its code names through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../taskflow/src");
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            let module = relative.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
            if matches!(module.as_str(), "lib" | "private" | "fuzzing")
                || !relative.ends_with(".rs")
            {
                continue;
            }
            let code = std::fs::read_to_string(&path).unwrap();
            let named = imports.entry(module.clone()).or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    let rest = &line[at + "crate::".len()..];
                    let name: String =
                        rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    // Macros and re-exports at the crate root are not modules.
                    if !name.is_empty() && name != module && root.join(&name).exists()
                        || root.join(format!("{name}.rs")).exists() && name != module
                    {
                        named.insert(name);
                    }
                }
            }
        }
    }
    imports
}

#[test]
fn top_level_modules_import_no_cycle() {
    let imports = imports();
    assert!(imports.len() > 10, "found the modules: {:?}", imports.keys());
    // Depth-first search for a path back to where it started.
    fn reaches(
        imports: &BTreeMap<String, BTreeSet<String>>,
        from: &str,
        target: &str,
        seen: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> bool {
        for next in imports.get(from).into_iter().flatten() {
            path.push(next.clone());
            if next == target
                || (seen.insert(next.clone()) && reaches(imports, next, target, seen, path))
            {
                return true;
            }
            path.pop();
        }
        false
    }
    for module in imports.keys() {
        let mut path = vec![module.clone()];
        let cycle = reaches(&imports, module, module, &mut BTreeSet::new(), &mut path);
        assert!(!cycle, "an import cycle: {}", path.join(" -> "));
    }
}
