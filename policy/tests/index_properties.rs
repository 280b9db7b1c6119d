//! The address index agrees with a brute-force model on small address spaces.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use policy::{AddressIndex, ObjectKey};
use proptest::prelude::*;

/// Blocks inside 10.0.0.0/24, so the brute force can enumerate every address.
fn block() -> impl Strategy<Value = Ipv4Net> {
    (0u8..=255, 24u8..=32).prop_map(|(last, prefix)| {
        Ipv4Net::new(Ipv4Addr::new(10, 0, 0, last), prefix)
            .unwrap()
            .trunc()
    })
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn conflicts_match_brute_force(
        held in prop::collection::vec((0usize..6, block()), 0..12),
        query in block(),
    ) {
        let mut index = AddressIndex::new();
        let mut model: Vec<(ObjectKey, Ipv4Net)> = Vec::new();
        for owner in 0..6 {
            let nets: Vec<IpNet> = held.iter().filter(|(o, _)| *o == owner).map(|(_, n)| IpNet::V4(*n)).collect();
            let key = ObjectKey::new("ns", format!("se{owner}"));
            index.replace(&key, &nets);
            for (o, n) in &held {
                if *o == owner && !model.contains(&(key.clone(), *n)) {
                    model.push((key.clone(), *n));
                }
            }
        }
        let mut expected: Vec<(String, IpNet)> = model
            .iter()
            .filter(|(_, n)| overlaps(n, &query))
            .map(|(k, n)| (k.to_string(), IpNet::V4(*n)))
            .collect();
        let mut actual: Vec<(String, IpNet)> = index
            .conflicts(IpNet::V4(query), None)
            .iter()
            .map(|c| (c.owner.to_string(), c.held))
            .collect();
        expected.sort();
        actual.sort();
        prop_assert_eq!(actual, expected);
    }

    #[test]
    fn next_free_is_the_lowest_untaken_address(
        held in prop::collection::vec(block(), 0..40),
        exclude in prop::collection::vec(block(), 0..3),
    ) {
        let key = ObjectKey::new("ns", "a");
        let mut index = AddressIndex::new();
        let nets: Vec<IpNet> = held.iter().map(|n| IpNet::V4(*n)).collect();
        index.replace(&key, &nets);
        let excluded: Vec<IpNet> = exclude.iter().map(|n| IpNet::V4(*n)).collect();
        let range: IpNet = "10.0.0.0/24".parse().unwrap();
        let taken = |ip: Ipv4Addr| held.iter().chain(exclude.iter()).any(|n| n.contains(&ip));
        let expected = (1u8..=254)
            .map(|last| Ipv4Addr::new(10, 0, 0, last))
            .find(|ip| !taken(*ip))
            .map(IpAddr::V4);
        prop_assert_eq!(index.next_free(range, &excluded), expected);
    }

    /// The runs of held addresses that make `next_free` fast are kept through any sequence of
    /// replacements and removals, nested and duplicate blocks included.
    #[test]
    fn next_free_follows_replacements_and_removals(
        steps in prop::collection::vec((0usize..6, prop::collection::vec(block(), 0..4)), 1..30),
        exclude in prop::collection::vec(block(), 0..3),
    ) {
        let mut index = AddressIndex::new();
        let mut model: Vec<Vec<Ipv4Net>> = vec![Vec::new(); 6];
        for (owner, nets) in &steps {
            let key = ObjectKey::new("ns", format!("se{owner}"));
            if nets.is_empty() {
                index.remove(&key);
            } else {
                let nets: Vec<IpNet> = nets.iter().map(|n| IpNet::V4(*n)).collect();
                index.replace(&key, &nets);
            }
            model[*owner] = nets.clone();
            let excluded: Vec<IpNet> = exclude.iter().map(|n| IpNet::V4(*n)).collect();
            let taken = |ip: Ipv4Addr| {
                model.iter().flatten().chain(exclude.iter()).any(|n| n.contains(&ip))
            };
            let expected = (1u8..=254)
                .map(|last| Ipv4Addr::new(10, 0, 0, last))
                .find(|ip| !taken(*ip))
                .map(IpAddr::V4);
            let range: IpNet = "10.0.0.0/24".parse().unwrap();
            prop_assert_eq!(index.next_free(range, &excluded), expected);
            let narrow: IpNet = "10.0.0.128/25".parse().unwrap();
            let expected = (129u8..=254)
                .map(|last| Ipv4Addr::new(10, 0, 0, last))
                .find(|ip| !taken(*ip))
                .map(IpAddr::V4);
            prop_assert_eq!(index.next_free(narrow, &excluded), expected);
        }
    }

    #[test]
    fn build_equals_incremental_inserts(held in prop::collection::vec((0usize..5, block()), 0..20)) {
        let entries: Vec<policy::ServiceEntry> = (0..5)
            .map(|owner| {
                let addresses: Vec<String> = held.iter().filter(|(o, _)| *o == owner).map(|(_, n)| n.to_string()).collect();
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                    "metadata": {"name": format!("se{owner}"), "namespace": "ns"},
                    "spec": {"addresses": addresses}
                })).unwrap()
            })
            .collect();
        let built = AddressIndex::build(&entries);
        let mut incremental = AddressIndex::new();
        for se in &entries {
            incremental.insert_entry(se);
        }
        prop_assert_eq!(built.len(), incremental.len());
        prop_assert_eq!(built.owners(), incremental.owners());
        for last in 0u8..=255 {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, last));
            let mut a: Vec<String> = built.conflicts(IpNet::from(ip), None).iter().map(|c| c.owner.to_string()).collect();
            let mut b: Vec<String> = incremental.conflicts(IpNet::from(ip), None).iter().map(|c| c.owner.to_string()).collect();
            a.sort();
            b.sort();
            prop_assert_eq!(a, b);
        }
    }
}
