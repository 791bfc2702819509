//! `lab-generator --plan FILE --out FILE`: runs one generator's share of a phase (see
//! `orchestrator::load::remote`). Kept thin so it builds as a static binary for the lab's
//! generator containers.

fn main() {
    std::process::exit(orchestrator::load::remote::generator_main());
}
