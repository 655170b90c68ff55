//! `token-provider wrap`: plug the token interceptor into an app component, so that the
//! app's requests through `wasi:http/client@0.3.0` get tokens without changing its code.

use std::path::PathBuf;
use std::process::ExitCode;
use token_provider_host::Flavor;
use token_provider_host::components::{EMBEDDED_INTERCEPTOR, EMBEDDED_INTERCEPTOR_WASMTIME};
use token_provider_host::compose;

#[derive(clap::Args)]
pub struct WrapArgs {
    /// The app component (it must import wasi:http/client@0.3.0).
    app: PathBuf,
    /// Where to write the composed component.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Which interceptor build to plug in: the WASI drafts of the host that will run it.
    #[arg(long, value_enum, default_value_t = Flavor::Spin)]
    flavor: Flavor,
}

pub fn run(args: WrapArgs) -> anyhow::Result<ExitCode> {
    let app = std::fs::read(&args.app)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", args.app.display()))?;
    let interceptor = match args.flavor {
        Flavor::Spin => EMBEDDED_INTERCEPTOR,
        Flavor::Wasmtime => EMBEDDED_INTERCEPTOR_WASMTIME,
    };
    let composed = compose::wrap(&app, interceptor)
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", args.app.display()))?;
    std::fs::write(&args.output, &composed)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", args.output.display()))?;
    eprintln!(
        "wrote {} ({} bytes): {} with the token interceptor ({} flavor) in front of its {}",
        args.output.display(),
        composed.len(),
        args.app.display(),
        args.flavor.name(),
        compose::HTTP_CLIENT
    );
    Ok(ExitCode::SUCCESS)
}
