//! Fixtures for the metadata unit tests: a bootstrapped state.

use super::state::{ClusterSecrets, MetaCommand, MetaState, NodeInfo};

/// A metadata state bootstrapped with `nodes` as (id, zone).
pub fn bootstrapped(nodes: &[(u64, &str)]) -> MetaState {
    let mut st = MetaState::default();
    st.apply(&MetaCommand::Bootstrap {
        secrets: ClusterSecrets {
            iterator_key_id: 1,
            iterator_key: [7; 32],
            cluster_id: 9,
        },
        nodes: nodes
            .iter()
            .map(|(id, zone)| NodeInfo {
                id: *id,
                zone: zone.to_string(),
                peer_addr: format!("n{id}:7400"),
                incarnation: None,
            })
            .collect(),
    });
    st
}
