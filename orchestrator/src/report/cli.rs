//! `orchestrator report` and `compare`: placeholders until the reports land.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {}
#[derive(Debug, clap::Args)]
pub struct CompareArgs {}

pub fn report(_a: ReportArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`report` is not built yet")
}
pub fn compare(_a: CompareArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`compare` is not built yet")
}
