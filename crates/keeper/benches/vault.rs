//! Seal and open of a 64-byte secret (the size of a Zoom refresh token's bulk).
//! `cargo bench -p keeper --bench vault`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use keeper::vault::{Keyring, Slot};

fn seal_and_open(c: &mut Criterion) {
    let vault = Keyring::generate().vault();
    let slot = Slot {
        table: "zoom_oauth_connections",
        column: "refresh_token",
        row_id: "zoc_0123456789abcdef",
    };
    let secret = [0x5au8; 64];
    let sealed = vault.seal(slot, &secret);

    let mut group = c.benchmark_group("vault");
    group.throughput(Throughput::Bytes(secret.len() as u64));
    group.bench_function("seal_64_bytes", |b| {
        b.iter(|| vault.seal(black_box(slot), black_box(&secret)))
    });
    group.bench_function("open_64_bytes", |b| {
        b.iter(|| vault.open(black_box(slot), black_box(&sealed)))
    });
    group.finish();
}

criterion_group!(benches, seal_and_open);
criterion_main!(benches);
