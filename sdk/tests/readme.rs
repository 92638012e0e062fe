//! The README promises that its example is `examples/books_service.rs`, which the build
//! compiles; this keeps the promise true when either changes.

#[test]
fn the_readme_shows_the_books_service_example_as_it_is() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/books_service.rs");
    // The example's module doc is the README's own prose; the code starts at its imports.
    let code = &example[example.find("use std::").expect("the example has imports")..];
    assert!(
        readme.contains(&format!("```rust,no_run\n{code}```")),
        "sdk/README.md must show examples/books_service.rs from its first `use` on, verbatim"
    );
}
