//! The UI cases that must compile (`tests/ui/pass/`): small programs using
//! the derives the way an application does. Each file is included as a
//! module of its own and its `main` runs as a test, so the cases compile
//! with the rest of this package instead of through trybuild, whose own
//! build of the tree cost minutes of every CI run (the compile-fail cases
//! run in `tests/ui`, package `reposmith-ui-tests`, against a smaller
//! crate).

use std::collections::BTreeSet;

/// Includes `tests/ui/pass/<case>.rs` as module `<case>` with a test that
/// runs its `main`.
macro_rules! pass_cases {
    ($($case:ident),+ $(,)?) => {
        $(
            // trybuild compiled each case with `-A dead_code`: a case declares
            // entities only to see that they compile.
            #[allow(dead_code)]
            mod $case {
                include!(concat!("../ui/pass/", stringify!($case), ".rs"));

                #[test]
                fn compiles_and_runs() {
                    main();
                }
            }
        )+

        /// The cases listed above, to compare with the folder.
        const INCLUDED: &[&str] = &[$(stringify!($case)),+];
    };
}

pass_cases!(
    assigned_and_identity_ids,
    backends,
    cache,
    full_entity,
    read_preference,
    relations,
    small_integer_ids,
    vector_fields,
);

/// A case added to the folder but not to the list would never compile:
/// trybuild's glob used to pick up every file.
#[test]
fn every_pass_case_is_included() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/pass");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&folder)
        .expect("tests/ui/pass exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| {
            path.file_stem()
                .expect("a file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let listed: BTreeSet<String> = INCLUDED.iter().map(|case| (*case).to_owned()).collect();
    assert_eq!(
        on_disk,
        listed,
        "list every file of {} in pass_cases!",
        folder.display()
    );
}
