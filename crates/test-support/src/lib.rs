//! What the gateway's tests and its benchmark share: em-sim in-process or as a process, the
//! gateway in-process (with its background workers steppable) or as a process, a fresh
//! database per test on SQLite or PostgreSQL, a webhook receiver whose answer can be
//! switched, and waiting on conditions with deadlines.

mod app;
mod db;
mod process;
mod receiver;
mod sim;
mod wait;

pub use app::*;
pub use db::*;
pub use process::*;
pub use receiver::*;
pub use sim::*;
pub use wait::*;

/// Runs one test body (an `async fn(Db)` in scope) against both databases.
#[macro_export]
macro_rules! both_databases {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Db::Sqlite).await }) +
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Db::Postgres).await }) +
        }
    };
}
