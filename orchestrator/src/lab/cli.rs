//! Lab subcommands: placeholders until the lab lands.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {}
#[derive(Debug, clap::Args)]
pub struct StartArgs {}
#[derive(Debug, clap::Args)]
pub struct StopArgs {}
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

fn not_yet() -> anyhow::Result<i32> {
    anyhow::bail!("the Docker lab is not built yet")
}
pub fn images(_a: ImagesArgs) -> anyhow::Result<i32> {
    not_yet()
}
pub fn start(_a: StartArgs) -> anyhow::Result<i32> {
    not_yet()
}
pub fn stop(_a: StopArgs) -> anyhow::Result<i32> {
    not_yet()
}
pub fn status(_a: StatusArgs) -> anyhow::Result<i32> {
    not_yet()
}
pub fn run(_a: RunArgs) -> anyhow::Result<i32> {
    not_yet()
}
