//! Two runners with one name in different modules (which the compile-time
//! check cannot see) and one named like a built-in runner: building either
//! name fails at run time, and `registry::duplicates` lists both.

use forge::registry::{self, BuildContext};
use serde_json::json;

mod a {
    #[derive(serde::Deserialize)]
    pub struct Twin;

    #[forge::forge_runner(name = "twin")]
    impl Twin {
        async fn answer(&self, _query: &str) -> Result<String, std::io::Error> {
            Ok("a".into())
        }
    }
}

mod b {
    #[derive(serde::Deserialize)]
    pub struct Twin;

    #[forge::forge_runner(name = "twin")]
    impl Twin {
        async fn answer(&self, _query: &str) -> Result<String, std::io::Error> {
            Ok("b".into())
        }
    }
}

#[derive(serde::Deserialize)]
struct MyEcho;

#[forge::forge_runner(name = "echo")]
impl MyEcho {
    async fn answer(&self, query: &str) -> Result<String, std::io::Error> {
        Ok(query.into())
    }
}

#[test]
fn duplicate_names_fail_at_build_time() {
    for name in ["twin", "echo"] {
        let err = registry::build(json!({ "type": name }), &BuildContext::default())
            .err()
            .expect("duplicate name");
        assert_eq!(err.runner, name);
        assert!(
            err.message
                .contains(&format!("runner name `{name}` registered twice")),
            "{err}"
        );
    }
    assert_eq!(registry::duplicates(), ["echo", "twin"]);
}
