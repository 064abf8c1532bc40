//! Run one seed and print every node's final state: `cargo run -p basalt-sim --example seed -- SEED BYZ`.
fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let config = basalt_sim::SimConfig {
        byzantine: args.get(1).copied().unwrap_or(1) as usize,
        loss_permille: 200,
        partitions: true,
        crashes: true,
        ..Default::default()
    };
    let outcome = basalt_sim::run_seed(&config, args.first().copied().unwrap_or(0));
    println!("{outcome:?}");
    for line in &outcome.nodes {
        println!("{line}");
    }
}
