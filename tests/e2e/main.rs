//! End-to-end tests: the real binaries as processes, real databases, real TCP.
//! One test binary with a module per area (as linkerd and sozu do); `docs/testing.md` maps them.

mod config_files;
mod deploy;
mod edge;
mod local_stack;
mod origin_bad_input;
mod origin_flows;

/// Generates `<name>::sqlite` and `<name>::postgres` from `async fn name(Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                super::$name(outpost_e2e::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                super::$name(outpost_e2e::Backend::Postgres).await
            }
        }
    )*};
}
pub(crate) use on_both_backends;
