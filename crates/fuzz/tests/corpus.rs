//! Replays every committed fuzz input through its target: the seed corpora
//! (`fuzz/corpus/TARGET/`) and the inputs that once crashed a target (`fuzz/regressions/TARGET/`).
//! A folder named after no target is an error, so a renamed target cannot leave its corpus
//! silently unread.

use std::path::Path;

#[test]
fn every_committed_input_runs_through_its_target_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut replayed = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(folders) = std::fs::read_dir(root.join(kind)) else { continue };
        for folder in folders.flatten() {
            let name = folder.file_name().to_string_lossy().into_owned();
            let target = tern_fuzz::TARGETS
                .iter()
                .find(|(target, _)| *target == name)
                .unwrap_or_else(|| panic!("fuzz/{kind}/{name} is named after no target"))
                .1;
            for input in std::fs::read_dir(folder.path()).into_iter().flatten().flatten() {
                let bytes = std::fs::read(input.path()).unwrap_or_default();
                target(&bytes);
                replayed += 1;
            }
        }
    }
    assert!(replayed >= tern_fuzz::TARGETS.len(), "only {replayed} inputs replayed");
}

#[test]
fn every_target_has_a_libfuzzer_wrapper_and_a_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    for (name, _) in tern_fuzz::TARGETS {
        assert!(
            root.join("fuzz_targets").join(format!("{name}.rs")).exists(),
            "{name}: no wrapper"
        );
        let seeds = std::fs::read_dir(root.join("corpus").join(name)).map(Iterator::count);
        assert!(seeds.unwrap_or(0) > 0, "{name}: no seed corpus");
    }
}
