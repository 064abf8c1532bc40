//! The SDK against a real 4-validator devnet in this process, on loopback: the typed client,
//! receipt subscriptions (reconnect, polling fallback, deadlines), and the batch submitter
//! (a poison item, 1,000 create→respond pairs over 4 signers, failed dependencies, failover
//! of a balanced client, nonce gap repair). Every test is bounded in time, and each uses its
//! own accounts, so they share one devnet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod devnet;

use basalt_client::{
    BalancedClient, BalancedConfig, BatchSubmitter, BlockAt, ChainClient, Client, ClientError,
    FlushReason, ItemResultJson, OpError, OpHandle, OpOutcome, RetryReason, SubmitterConfig,
    Subscription, SubscriptionConfig, TxStatusKind, WithSubscription,
};
use basalt_types::{sha256, BatchItem, BatchMode, Hash, Keypair, Payload, PublicKey, SignedTx};
use devnet::{account, dead_url, devnet, Proxy, CHAIN_ID};
use std::future::{Future, IntoFuture};
use std::time::{Duration, Instant};

/// Bound on any one test.
const TEST_TIMEOUT: Duration = Duration::from_secs(100);

async fn bounded<T>(what: &str, test: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TEST_TIMEOUT, test).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {TEST_TIMEOUT:?}"),
    }
}

fn transfer(to: PublicKey, amount: u64) -> BatchItem {
    BatchItem::Transfer {
        to,
        asset: 0,
        amount,
    }
}

fn task_id(label: &str, i: usize) -> Hash {
    sha256(format!("client-test/{label}/{i}").as_bytes())
}

fn create(label: &str, i: usize) -> BatchItem {
    BatchItem::CreateTask {
        task_id: task_id(label, i),
        payload_hash: sha256(format!("payload/{label}/{i}").as_bytes()),
    }
}

fn respond(label: &str, i: usize) -> BatchItem {
    BatchItem::RespondTask {
        task_id: task_id(label, i),
        result_hash: sha256(format!("result/{label}/{i}").as_bytes()),
    }
}

/// A balanced client over every node, with WebSocket receipts from the first reachable one.
async fn connection(urls: &[String]) -> WithSubscription<BalancedClient> {
    let balanced = BalancedClient::with_config(
        urls,
        BalancedConfig {
            health_interval: Duration::from_millis(250),
            ..BalancedConfig::default()
        },
    )
    .await
    .unwrap();
    let subscription = Subscription::connect(urls).unwrap();
    WithSubscription::new(balanced, subscription)
}

fn test_config() -> SubmitterConfig {
    SubmitterConfig {
        op_timeout: Duration::from_secs(45),
        stall_check_interval: Duration::from_millis(500),
        ..SubmitterConfig::default()
    }
}

fn expect_committed(what: &str, outcome: &OpOutcome) -> (u64, Hash) {
    match outcome {
        OpOutcome::Committed {
            height, tx_hash, ..
        } => (*height, *tx_hash),
        other => panic!("{what}: expected committed, got {other:?}"),
    }
}

fn expect_failed(what: &str, outcome: &OpOutcome, expected_code: &str) {
    match outcome {
        OpOutcome::Rejected {
            reason: OpError::Failed { code, .. },
        } if code == expected_code => {}
        other => panic!("{what}: expected a {expected_code} failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_calls_are_typed() {
    let urls = &devnet().urls;
    bounded("client calls", async {
        let client = Client::new(&urls[0]).unwrap();
        let status = client.status().await.unwrap();
        assert_eq!(status.chain_id, CHAIN_ID);
        assert_eq!(status.validators.len(), devnet::VALIDATORS);
        let block = client.block(BlockAt::Latest).await.unwrap();
        assert!(block.header.height >= 1);
        let signer = account(60);
        let info = client.account(signer.public()).await.unwrap();
        assert!(info.exists);
        assert_eq!(info.balances.get("0"), Some(&devnet::BALANCE));

        // A dry run does not consume anything.
        let tx = SignedTx::sign(
            &signer,
            CHAIN_ID,
            info.nonce,
            Payload::Single(transfer(account(61).public(), 5)),
        );
        let receipt = client.simulate(&tx).await.unwrap();
        assert_eq!(
            receipt.items,
            vec![ItemResultJson::Applied { order_id: None }]
        );
        assert_eq!(
            client.account(signer.public()).await.unwrap().nonce,
            info.nonce
        );

        // Submit: one admitted, one refused with its typed reason.
        let foreign = SignedTx::sign(
            &signer,
            "other-chain",
            0,
            Payload::Single(transfer(signer.public(), 1)),
        );
        let results = client.submit(&[tx.clone(), foreign]).await.unwrap();
        assert_eq!(results[0], Ok(tx.hash()));
        assert_eq!(results[1].as_ref().unwrap_err().code, "wrong_chain_id");
        let receipt = client
            .wait_receipt_polling(tx.hash(), Instant::now() + Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(receipt.hash, tx.hash());
        let status = client.tx_status(tx.hash()).await.unwrap();
        assert_eq!(status.status, TxStatusKind::Committed);
        assert_eq!(status.height, Some(receipt.height));

        // Errors are typed.
        match client.block(BlockAt::Height(u64::MAX / 2)).await {
            Err(ClientError::Http {
                status: 404, code, ..
            }) => assert_eq!(code, "not_found"),
            other => panic!("expected a 404, got {other:?}"),
        }
        let unknown = client.tx_status(Hash([7; 32])).await.unwrap();
        assert_eq!(unknown.status, TxStatusKind::Unknown);
        let dead = Client::new(&dead_url()).unwrap();
        assert!(matches!(
            dead.status().await,
            Err(ClientError::Transport { .. })
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_multiplexes_reconnects_and_falls_back_to_polling() {
    let urls = &devnet().urls;
    bounded("subscription", async {
        let client = Client::new(&urls[1]).unwrap();
        let signer = account(62);
        let mut nonce = client.account(signer.public()).await.unwrap().nonce;
        let mut sign = |amount| {
            let tx = SignedTx::sign(
                &signer,
                CHAIN_ID,
                nonce,
                Payload::Single(transfer(account(63).public(), amount)),
            );
            nonce += 1;
            tx
        };

        // Many waiters on one socket, reached through a proxy whose connections we cut
        // after the hashes were subscribed: the subscription reconnects and subscribes
        // them again, and the server pushes what committed meanwhile.
        let proxy = Proxy::start(&urls[0], false).await;
        let subscription = Subscription::connect(&[proxy.url()]).unwrap();
        wait_until("the subscription connects", || subscription.is_connected()).await;
        let txs: Vec<SignedTx> = (1..=100).map(&mut sign).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let waits: Vec<_> = txs
            .iter()
            .map(|tx| {
                let subscription = subscription.clone();
                let hash = tx.hash();
                tokio::spawn(async move { subscription.wait_receipt(hash, deadline).await })
            })
            .collect();
        wait_until("every waiter registers", || subscription.waiters() == 100).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        proxy.drop_connections();
        for result in client.submit(&txs).await.unwrap() {
            result.unwrap();
        }
        for (wait, tx) in waits.into_iter().zip(&txs) {
            let receipt = wait.await.unwrap().unwrap();
            assert_eq!(receipt.hash, tx.hash());
        }
        assert!(subscription.connections() >= 2, "it reconnected");
        assert_eq!(subscription.waiters(), 0);

        // A deadline ends a wait for something that never commits.
        let started = Instant::now();
        let never = subscription
            .wait_receipt(Hash([9; 32]), Instant::now() + Duration::from_millis(300))
            .await;
        assert!(
            matches!(never, Err(ClientError::Timeout { .. })),
            "{never:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));

        // No WebSocket possible: receipts still arrive, by polling.
        let http_only = Proxy::start(&urls[2], true).await;
        let polling = Subscription::with_config(
            &[http_only.url()],
            SubscriptionConfig {
                poll_interval: Duration::from_millis(100),
                ..SubscriptionConfig::default()
            },
        )
        .unwrap();
        let tx = sign(1);
        client.submit(std::slice::from_ref(&tx)).await.unwrap()[0]
            .clone()
            .unwrap();
        let receipt = polling
            .wait_receipt(tx.hash(), Instant::now() + Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(receipt.hash, tx.hash());
        assert!(!polling.is_connected());

        // Beyond the per-connection watch bound, hashes are polled beside the socket.
        let bounded_watch = Subscription::with_config(
            &[urls[0].clone()],
            SubscriptionConfig {
                watched_max: 0,
                poll_interval: Duration::from_millis(100),
                ..SubscriptionConfig::default()
            },
        )
        .unwrap();
        wait_until("the bounded subscription connects", || {
            bounded_watch.is_connected()
        })
        .await;
        let tx = sign(2);
        client.submit(std::slice::from_ref(&tx)).await.unwrap()[0]
            .clone()
            .unwrap();
        let receipt = bounded_watch
            .wait_receipt(tx.hash(), Instant::now() + Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(receipt.hash, tx.hash());
    })
    .await;
}

/// Wait (at most 20 s) until `condition` holds.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Submit `items` one by one and wait for all of them.
async fn submit_all<C: ChainClient>(
    submitter: &BatchSubmitter<C>,
    items: Vec<BatchItem>,
) -> Vec<OpOutcome> {
    let handles: Vec<OpHandle> = items
        .into_iter()
        .map(|item| submitter.submit(item))
        .collect();
    futures::future::join_all(handles.into_iter().map(IntoFuture::into_future)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_item_fails_alone_and_the_rest_commits() {
    let urls = &devnet().urls;
    bounded("poison item", async {
        let chain = connection(urls).await;
        let config = SubmitterConfig {
            // One window gathers every item into one batch.
            flush_interval: Duration::from_millis(200),
            ..test_config()
        };
        let submitter = BatchSubmitter::start(chain, vec![account(40)], config)
            .await
            .unwrap();
        let recipient = account(41).public();
        let mut items: Vec<BatchItem> = (1..=20).map(|i| transfer(recipient, i)).collect();
        items.insert(7, respond("never-created", 0));
        let outcomes = submit_all(&submitter, items).await;
        expect_failed(
            "the respond to an unknown task",
            &outcomes[7],
            "unknown_task",
        );
        let mut hashes = std::collections::HashSet::new();
        for (i, outcome) in outcomes.iter().enumerate().filter(|(i, _)| *i != 7) {
            hashes.insert(expect_committed(&format!("item {i}"), outcome).1);
        }
        assert_eq!(hashes.len(), 1, "all items went in one batch transaction");
        assert_eq!(
            submitter.metrics().dry_runs(),
            0,
            "per-item results need no dry run"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_atomic_batch_is_stripped_of_its_poison_item() {
    let urls = &devnet().urls;
    bounded("atomic strip", async {
        let chain = connection(urls).await;
        let config = SubmitterConfig {
            flush_interval: Duration::from_millis(200),
            batch_mode: BatchMode::Atomic,
            ..test_config()
        };
        let submitter = BatchSubmitter::start(chain, vec![account(42)], config)
            .await
            .unwrap();
        let recipient = account(43).public();
        let mut items: Vec<BatchItem> = (1..=20).map(|i| transfer(recipient, i)).collect();
        items.insert(
            3,
            BatchItem::Transfer {
                to: recipient,
                asset: 99,
                amount: 1,
            },
        );
        let outcomes = submit_all(&submitter, items).await;
        expect_failed(
            "the transfer of an unknown asset",
            &outcomes[3],
            "unknown_asset",
        );
        for (i, outcome) in outcomes.iter().enumerate().filter(|(i, _)| *i != 3) {
            expect_committed(&format!("item {i}"), outcome);
        }
        let metrics = submitter.metrics();
        // Every item was dry-run (some twice when a block landed between the nonce read and
        // the dry run), and the batch went round again once, without its poison.
        assert!(metrics.dry_runs() >= 21, "{}", metrics.dry_runs());
        assert_eq!(metrics.retries(RetryReason::Stripped), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_create_respond_pairs_over_four_signers() {
    const PAIRS: usize = 1000;
    let urls = &devnet().urls;
    bounded("1,000 pairs", async {
        let chain = connection(urls).await;
        let signers: Vec<Keypair> = (0..4).map(account).collect();
        let submitter = BatchSubmitter::start(chain, signers, test_config())
            .await
            .unwrap();
        let started = Instant::now();
        let mut creates = Vec::with_capacity(PAIRS);
        let mut responds = Vec::with_capacity(PAIRS);
        for i in 0..PAIRS {
            let created = submitter.submit(create("pairs", i));
            responds.push(submitter.submit_after(respond("pairs", i), &created));
            creates.push(created);
        }
        let creates =
            futures::future::join_all(creates.into_iter().map(IntoFuture::into_future)).await;
        let responds =
            futures::future::join_all(responds.into_iter().map(IntoFuture::into_future)).await;
        let elapsed = started.elapsed();
        for (i, (created, responded)) in creates.iter().zip(&responds).enumerate() {
            let (create_height, _) = expect_committed(&format!("create {i}"), created);
            let (respond_height, _) = expect_committed(&format!("respond {i}"), responded);
            assert!(
                respond_height > create_height,
                "pair {i}: respond at {respond_height}, create at {create_height}"
            );
        }
        let metrics = submitter.metrics();
        assert_eq!(metrics.outcomes("committed"), 2 * PAIRS as u64);
        let flushes: u64 = FlushReason::ALL.iter().map(|r| metrics.flushes(*r)).sum();
        eprintln!(
            "1,000 create→respond pairs over 4 signers: {} operations committed in {:.2} s \
             ({:.0} ops/s) in {flushes} batches ({} by size, {} by interval)",
            2 * PAIRS,
            elapsed.as_secs_f64(),
            (2 * PAIRS) as f64 / elapsed.as_secs_f64(),
            metrics.flushes(FlushReason::Size),
            metrics.flushes(FlushReason::Interval),
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_fails_its_dependent_respond() {
    let urls = &devnet().urls;
    bounded("failed dependency", async {
        // A sender that is not a task generator.
        let outsider =
            BatchSubmitter::start(connection(urls).await, vec![account(44)], test_config())
                .await
                .unwrap();
        let refused = outsider.submit(create("outsider", 0));
        let orphan = outsider.submit_after(respond("outsider", 0), &refused);
        expect_failed(
            "a create by a non-generator",
            &refused.await,
            "not_task_generator",
        );
        match orphan.await {
            OpOutcome::Rejected {
                reason: OpError::DependencyFailed { reason, .. },
            } => assert!(reason.contains("not_task_generator"), "{reason}"),
            other => panic!("expected a dependency failure, got {other:?}"),
        }

        // A duplicate task id.
        let generator =
            BatchSubmitter::start(connection(urls).await, vec![account(10)], test_config())
                .await
                .unwrap();
        let first = generator.submit(create("duplicate", 0)).await;
        expect_committed("the first create", &first);
        let duplicate = generator.submit(create("duplicate", 0));
        let dependent = generator.submit_after(respond("duplicate", 0), &duplicate);
        expect_failed(
            "a duplicate create",
            &duplicate.outcome().await,
            "task_exists",
        );
        match dependent.await {
            OpOutcome::Rejected {
                reason: OpError::DependencyFailed { dependency, reason },
            } => {
                assert_eq!(dependency, duplicate.id());
                assert!(reason.contains("task_exists"), "{reason}");
            }
            other => panic!("expected a dependency failure, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balanced_client_fails_over_from_dead_and_dying_endpoints() {
    let urls = &devnet().urls;
    bounded("failover", async {
        let dying = Proxy::start(&urls[0], false).await;
        let endpoints = vec![dead_url(), dying.url(), urls[1].clone(), urls[2].clone()];
        let balanced = BalancedClient::with_config(
            &endpoints,
            BalancedConfig {
                health_interval: Duration::from_millis(200),
                ..BalancedConfig::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            balanced.healthy_endpoints().len(),
            3,
            "the dead port is out from the start"
        );
        // Receipts through the dying proxy first: the subscription must move on too.
        let subscription = Subscription::connect(&[dying.url(), urls[1].clone()]).unwrap();
        let chain = WithSubscription::new(balanced.clone(), subscription.clone());
        let submitter = BatchSubmitter::start(
            chain,
            vec![account(45), account(46)],
            SubmitterConfig {
                flush_interval: Duration::from_millis(10),
                max_batch_items: 16,
                ..test_config()
            },
        )
        .await
        .unwrap();
        let recipient = account(47).public();
        let mut handles = Vec::new();
        for wave in 0..6u64 {
            for i in 0..50 {
                handles.push(submitter.submit(transfer(recipient, 1 + wave * 100 + i)));
            }
            if wave == 2 {
                dying.stop();
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        for (i, handle) in handles.into_iter().enumerate() {
            expect_committed(&format!("transfer {i}"), &handle.await);
        }
        let healthy = balanced.healthy_endpoints();
        assert!(!healthy.contains(&dying.url()), "{healthy:?}");
        assert!(!healthy.contains(&endpoints[0]), "{healthy:?}");
        assert_eq!(healthy.len(), 2);
        // Plain reads keep working through the balancer.
        assert_eq!(balanced.status().await.unwrap().chain_id, CHAIN_ID);
        assert!(
            subscription.connections() >= 2,
            "receipts moved to another node"
        );
        eprintln!(
            "failover: 300 transfers committed; {} calls retried on another endpoint, {} \
             endpoints taken out by failed calls",
            balanced.failovers(),
            balanced.ejections()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_is_retried_on_another_endpoint() {
    let urls = &devnet().urls;
    bounded("retry on another endpoint", async {
        let dying = Proxy::start(&urls[3], false).await;
        let balanced = BalancedClient::with_config(
            &[dying.url(), urls[3].clone()],
            BalancedConfig {
                // No health check during the test: only failed requests take it out.
                health_interval: Duration::from_secs(3600),
                ..BalancedConfig::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(balanced.healthy_endpoints().len(), 2);
        dying.stop();
        for _ in 0..30 {
            assert_eq!(balanced.status().await.unwrap().chain_id, CHAIN_ID);
        }
        assert_eq!(
            balanced.failovers(),
            1,
            "one call hit the stopped endpoint, once"
        );
        assert_eq!(balanced.ejections(), 1);
        assert_eq!(balanced.healthy_endpoints(), vec![urls[3].clone()]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_recovers_from_nonce_gaps_and_foreign_transactions() {
    let urls = &devnet().urls;
    bounded("nonce gap repair", async {
        let chain = connection(urls).await;
        let signer = account(48);
        let submitter = BatchSubmitter::start(
            chain,
            vec![signer.clone()],
            SubmitterConfig {
                stall_check_interval: Duration::from_millis(300),
                ..test_config()
            },
        )
        .await
        .unwrap();
        let recipient = account(49).public();
        let nonces = submitter.nonce_manager(0).unwrap();
        expect_committed(
            "before any gap",
            &submitter.submit(transfer(recipient, 1)).await,
        );

        // A gap: a nonce taken and never sent. The next batch stalls behind it until a
        // repair fills it.
        nonces.skip_nonce().unwrap();
        expect_committed(
            "behind a gap",
            &submitter.submit(transfer(recipient, 2)).await,
        );
        assert!(submitter.metrics().fillers() >= 1);
        assert!(submitter.metrics().nonce_repairs() >= 1);

        // A foreign transaction takes the nonce the submitter will use next: the batch is
        // refused as stale, re-signed, and commits.
        let client = Client::new(&urls[3]).unwrap();
        let foreign = SignedTx::sign(
            &signer,
            CHAIN_ID,
            nonces.next_nonce(),
            Payload::Single(transfer(recipient, 3)),
        );
        client.submit(std::slice::from_ref(&foreign)).await.unwrap()[0]
            .clone()
            .unwrap();
        client
            .wait_receipt_polling(foreign.hash(), Instant::now() + Duration::from_secs(20))
            .await
            .unwrap();
        expect_committed(
            "after a foreign transaction",
            &submitter.submit(transfer(recipient, 4)).await,
        );
        assert!(submitter.metrics().retries(RetryReason::StaleNonce) >= 1);

        // A foreign transaction racing for the same nonce, still pending.
        let racing = SignedTx::sign(
            &signer,
            CHAIN_ID,
            nonces.next_nonce(),
            Payload::Single(transfer(recipient, 5)),
        );
        let _ = client.submit(std::slice::from_ref(&racing)).await.unwrap();
        let raced = submitter.submit(transfer(recipient, 6));

        // And the signer keeps going.
        let rest = submit_all(
            &submitter,
            (7..57).map(|i| transfer(recipient, i)).collect(),
        )
        .await;
        expect_committed("racing a foreign transaction", &raced.await);
        for (i, outcome) in rest.iter().enumerate() {
            expect_committed(&format!("afterwards {i}"), outcome);
        }
        // The node asked may be a block behind the one that delivered the last receipt.
        let expected = nonces.chain_nonce();
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.account(signer.public()).await.unwrap().nonce != expected {
            assert!(
                Instant::now() < deadline,
                "the chain's nonce never reached {expected}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(nonces.pending(), 0);
    })
    .await;
}
