//! `token-provider`: get tokens and call protected APIs through the component, or run
//! the offline demo. The subcommands live in `cli/`.

mod cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::main().await
}
