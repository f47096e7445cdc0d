//! Which memcached server holds an item: rendezvous (highest-random-weight) hashing over xxh3,
//! a fixed algorithm, so every edge node in every build picks the same server for a key.
//! Adding a server moves only the keys it now wins (about 1/n of them); a dead server's keys
//! stay with it (its breaker makes them misses) instead of flooding the others.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

pub struct Router {
    /// One seed per server, from its address: the server's identity in the hash.
    seeds: Vec<u64>,
}

impl Router {
    pub fn new<S: AsRef<str>>(servers: &[S]) -> Self {
        Self {
            seeds: servers
                .iter()
                .map(|s| xxh3_64(s.as_ref().as_bytes()))
                .collect(),
        }
    }

    /// Every server for `key`, best first: where copies of a replicated item go.
    pub fn ranked(&self, key: &[u8]) -> Vec<usize> {
        let mut scored: Vec<(u64, usize)> = self
            .seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| (xxh3_64_with_seed(key, *seed), i))
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, i)| i).collect()
    }

    /// The index of the server for `key`.
    pub fn route(&self, key: &[u8]) -> usize {
        let mut best = (0, 0u64);
        for (i, seed) in self.seeds.iter().enumerate() {
            let score = xxh3_64_with_seed(key, *seed);
            if score > best.1 || i == 0 {
                best = (i, score);
            }
        }
        best.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: [&str; 3] = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"];

    #[test]
    fn assignments_are_fixed_across_builds() {
        // Pinned: if this changes, nodes running different builds would disagree on where
        // items live, and a rolling upgrade would empty the shared tier.
        let r = Router::new(&THREE);
        let got: Vec<usize> = [
            "a",
            "b",
            "outpost:m:00ff",
            "outpost:c:00ff:1:0",
            "x".repeat(200).as_str(),
        ]
        .iter()
        .map(|k| r.route(k.as_bytes()))
        .collect();
        assert_eq!(got, ROUTES_PINNED);
    }

    #[test]
    fn the_first_ranked_server_is_the_routed_one() {
        let r = Router::new(&THREE);
        for k in ["a", "b", "outpost:purge:seq", "zz"] {
            let ranked = r.ranked(k.as_bytes());
            assert_eq!(ranked[0], r.route(k.as_bytes()), "{k}");
            let mut sorted = ranked.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2]);
        }
    }

    /// Computed once with xxh3 0.8; see the test above.
    const ROUTES_PINNED: [usize; 5] = [0, 2, 0, 1, 0];

    #[test]
    fn order_of_the_list_does_not_matter() {
        let a = Router::new(&THREE);
        let b = Router::new(&[THREE[2], THREE[0], THREE[1]]);
        for i in 0..1000 {
            let key = format!("key-{i}");
            assert_eq!(
                THREE[a.route(key.as_bytes())],
                [THREE[2], THREE[0], THREE[1]][b.route(key.as_bytes())]
            );
        }
    }

    #[test]
    fn keys_spread_and_adding_a_server_moves_only_its_share() {
        let three = Router::new(&THREE);
        let four = Router::new(&[THREE[0], THREE[1], THREE[2], "10.0.0.4:11211"]);
        let n = 20_000;
        let mut per_server = [0usize; 3];
        let mut moved = 0;
        for i in 0..n {
            let key = format!("outpost:m:{i:032x}");
            let before = three.route(key.as_bytes());
            per_server[before] += 1;
            let after = four.route(key.as_bytes());
            if after != before {
                assert_eq!(after, 3, "a key only ever moves to the new server");
                moved += 1;
            }
        }
        for count in per_server {
            assert!(
                (count as f64 / n as f64 - 1.0 / 3.0).abs() < 0.03,
                "{per_server:?}"
            );
        }
        let share = moved as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.03, "moved {share}");
    }
}
