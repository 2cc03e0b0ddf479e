//! openraft's own storage test suite (`openraft::testing::log::Suite`) against Omium's Raft log
//! and state machine, each run on a fresh store in a temporary directory.

use omium_core::consensus::{LogStore, StateMachine, TypeConfig};
use omium_core::Store;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path()).expect("open store");
        let log = LogStore::new(&store).expect("log store");
        let sm = StateMachine::new(&store).expect("state machine");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder)
        .await
        .expect("openraft storage suite");
}
