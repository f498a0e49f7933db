//! Benchmarks that print tables and write JSON.

use anyhow::Result;

/// Benchmark commands.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// Every strategy through Pacer and as plain QEMU-to-QEMU migration.
    Baseline,
}

/// Runs a benchmark.
pub async fn run(cmd: BenchCmd) -> Result<i32> {
    match cmd {
        BenchCmd::Baseline => anyhow::bail!("not built yet"),
    }
}
