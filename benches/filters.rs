//! Filter throughput on a real photo (`tests/fixtures/images/raccoon.jpg`, 1024×768, 0.79 MP).
//!
//! Backs the worker-pool sizing in `origin/src/workers.rs` and the numbers in
//! `docs/benchmarks.md`: each benchmark runs on one thread, so images/second per core is
//! 1 / time. Two groups per filter: the filter alone, and the whole job a filter request costs a
//! worker (decode the stored JPEG, filter, encode the result).
//!
//! Run: `cargo bench -p origin --bench filters`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use origin::filters::Filter;
use origin::media::{self, DecodeLimits, MediaType};

const LIMITS: DecodeLimits = DecodeLimits {
    max_dimension: 12_000,
    max_pixels: 40_000_000,
};

fn photo() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/images/raccoon.jpg"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn filters(c: &mut Criterion) {
    let bytes = photo();
    let decoded = media::decode(&bytes, LIMITS).unwrap_or_else(|e| panic!("fixture: {e}"));
    let image = decoded.image;

    let mut alone = c.benchmark_group("filter");
    alone.throughput(Throughput::Elements(1));
    for filter in Filter::ALL {
        alone.bench_with_input(
            BenchmarkId::from_parameter(filter.name()),
            &filter,
            |b, f| {
                b.iter(|| f.apply(&image));
            },
        );
    }
    alone.finish();

    let mut job = c.benchmark_group("job");
    job.throughput(Throughput::Elements(1));
    job.bench_function("decode", |b| b.iter(|| media::decode(&bytes, LIMITS)));
    job.bench_function("encode", |b| {
        b.iter(|| media::encode(&image, MediaType::Jpeg))
    });
    for filter in Filter::ALL {
        job.bench_with_input(
            BenchmarkId::from_parameter(filter.name()),
            &filter,
            |b, f| {
                b.iter(|| {
                    let d = media::decode(&bytes, LIMITS).unwrap_or_else(|e| panic!("{e}"));
                    media::encode(&f.apply(&d.image), d.media_type)
                });
            },
        );
    }
    job.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = filters
}
criterion_main!(benches);
