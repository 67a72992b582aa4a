//! The contract of [`JobQueue`]: jobs written atomically with the market change that schedules
//! them (the outbox), leased claims of one kind at a time, longest due first, lease renewals,
//! completion, retries with a delay, dead jobs and their requeueing, releases, the fencing that
//! makes an overtaken attempt's outcome (or renewal) count for nothing, and the stats.
//!
//! Jobs are scheduled through the fixture's [`MarketRepository`], as the services do. Cases that
//! need a lease to run out claim with a zero lease and then poll, with a deadline, until the job
//! comes back, so adapters whose clock is coarse pass too.
//!
//! Concurrency (two claimers never getting the same job) and wake-ups are the adapter's own
//! tests: they depend on how the store locks and notifies.
//!
//! [`MarketRepository`]: markets_domain::market::MarketRepository

use markets_domain::jobs::{Failure, Job, JobId, JobKind, JobQueue, KindStats, NewJob};
use markets_domain::market::{
    CreateMarketError, MarketId, MarketPatch, MarketRepository, MarketStatus,
};
use markets_domain::user::{Email, User, UserRepository};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::RepositoryFixture;
use crate::repository::{new_market, unverified_user, user};

/// A job queue over fresh, empty storage, with the repositories whose writes fill it.
pub trait JobQueueFixture: RepositoryFixture {
    /// The queue under test, over the same storage as [`RepositoryFixture::Markets`].
    type Queue: JobQueue;

    /// The queue.
    fn queue(&self) -> &Self::Queue;
}

/// Generates one `#[test]` per job queue contract case, each on a fixture from `$make`
/// (an expression evaluating to a future of a [`JobQueueFixture`]).
#[macro_export]
macro_rules! job_queue_contract {
    ($make:expr) => {
        $crate::__contract_cases!(job_queue, $make;
            a_created_market_s_jobs_are_claimable,
            a_failing_create_stores_no_job,
            an_update_stores_its_jobs_only_if_it_applies,
            claims_take_at_most_the_limit_and_lease_what_they_take,
            completed_jobs_are_gone,
            an_expired_lease_makes_a_job_claimable_and_fences_the_old_attempt,
            a_failure_retries_as_the_next_attempt_after_its_delay,
            jobs_die_after_their_last_attempt_and_are_listed_newest_first,
            retry_dead_requeues_one_or_all_with_attempts_starting_over,
            released_jobs_are_due_at_once_and_keep_their_attempt_count,
            claims_take_only_the_kind_asked_for,
            claims_come_longest_due_first_and_say_how_long_they_waited,
            renewals_extend_the_lease_of_the_current_attempt_only,
            stats_count_each_kind_by_state_with_its_completions,
            prune_forgets_old_completions,
            account_emails_are_queued_with_the_user_and_for_known_emails_only,
        );
    };
}

/// Long enough never to run out during a case.
const LEASE: Duration = Duration::from_secs(600);

/// How long a case waits for a zero lease or delay to be over.
const PATIENCE: Duration = Duration::from_secs(10);

/// The kinds of job a new market schedules.
const MARKET_KINDS: [JobKind; 2] = [JobKind::NotifyMarketCreated, JobKind::IndexMarketEmbedding];

/// The two jobs a new market schedules.
fn jobs_for(id: MarketId) -> [NewJob; 2] {
    MARKET_KINDS.map(|kind| NewJob::new(kind, id))
}

/// A market created by `creator` with its two jobs.
async fn create<F: JobQueueFixture>(fixture: &F, creator: &User) -> MarketId {
    let new = new_market(creator, "Queued", MarketStatus::Open, 0);
    let jobs = jobs_for(new.id);
    let created = fixture.markets().create(new, &jobs).await.unwrap();
    created.id
}

/// A user and one market of theirs with its two jobs.
async fn one_market<F: JobQueueFixture>(fixture: &F) -> MarketId {
    let creator = user(fixture, "ann").await;
    create(fixture, &creator).await
}

/// Claims every kind's due jobs (up to 100 of each), kind by kind in [`JobKind::ALL`]'s order.
async fn claim<F: JobQueueFixture>(fixture: &F, lease: Duration) -> Vec<Job> {
    let mut claimed = Vec::new();
    for kind in JobKind::ALL {
        claimed.extend(fixture.queue().claim(kind, 100, lease).await.unwrap());
    }
    claimed
}

/// Claims (for [`LEASE`]) until job `id` comes back, and returns it with the other claimed
/// jobs released; panics after [`PATIENCE`].
async fn reclaim<F: JobQueueFixture>(fixture: &F, id: JobId) -> Job {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut claimed = claim(fixture, LEASE).await;
        if let Some(at) = claimed.iter().position(|job| job.id == id) {
            let job = claimed.swap_remove(at);
            fixture.queue().release(&claimed).await.unwrap();
            return job;
        }
        fixture.queue().release(&claimed).await.unwrap();
        assert!(Instant::now() < deadline, "job {id} never became due");
        crate::__private::tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn ids(jobs: &[Job]) -> HashSet<JobId> {
    jobs.iter().map(|job| job.id).collect()
}

/// Creating a market with jobs makes them claimable: each once, at attempt 1, about that
/// market.
pub async fn a_created_market_s_jobs_are_claimable<F: JobQueueFixture>(fixture: &F) {
    let id = one_market(fixture).await;
    let claimed = claim(fixture, LEASE).await;
    let kinds: HashSet<JobKind> = claimed.iter().map(|job| job.kind).collect();
    assert_eq!(kinds, MARKET_KINDS.into_iter().collect());
    assert_eq!(claimed.len(), 2, "{claimed:?}");
    assert!(claimed.iter().all(|job| job.market_id() == id));
    assert!(claimed.iter().all(|job| job.attempt == 1));
}

/// A create that fails (unknown creator) stores neither the market nor its jobs.
pub async fn a_failing_create_stores_no_job<F: JobQueueFixture>(fixture: &F) {
    let ghost = User {
        id: markets_domain::user::UserId::new(),
        ..user(fixture, "ann").await
    };
    let orphan = new_market(&ghost, "Orphan", MarketStatus::Open, 0);
    let jobs = jobs_for(orphan.id);
    let refused = fixture.markets().create(orphan.clone(), &jobs).await;
    assert!(matches!(refused, Err(CreateMarketError::UnknownCreator(_))));
    assert!(
        fixture
            .markets()
            .find_by_id(orphan.id)
            .await
            .unwrap()
            .is_none()
    );
    let claimed = claim(fixture, LEASE).await;
    assert!(
        claimed.is_empty(),
        "jobs of a market never stored: {claimed:?}"
    );
}

/// An update stores its jobs with it; an update that does not apply (a missing market, or a
/// version that has moved on) stores none.
pub async fn an_update_stores_its_jobs_only_if_it_applies<F: JobQueueFixture>(fixture: &F) {
    let creator = user(fixture, "ann").await;
    let new = new_market(&creator, "Updated", MarketStatus::Open, 0);
    let market = fixture.markets().create(new, &[]).await.unwrap();
    let patch = MarketPatch {
        status: Some(MarketStatus::Closed),
        ..MarketPatch::default()
    };
    let index = [NewJob::new(JobKind::IndexMarketEmbedding, market.id)];
    let markets = fixture.markets();

    let missing = MarketId::new();
    let for_missing = jobs_for(missing);
    let applied = markets.update(missing, 1, patch.clone(), &for_missing);
    assert!(applied.await.unwrap().is_none());
    let stale = markets.update(market.id, market.version + 1, patch.clone(), &index);
    assert!(stale.await.unwrap().is_none());
    let claimed = claim(fixture, LEASE).await;
    assert!(
        claimed.is_empty(),
        "jobs of updates not applied: {claimed:?}"
    );

    let applied = markets.update(market.id, market.version, patch, &index);
    assert!(applied.await.unwrap().is_some());
    let claimed = claim(fixture, LEASE).await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(
        (claimed[0].kind, claimed[0].market_id()),
        (index[0].kind, market.id)
    );
}

/// A claim takes at most `limit` jobs, and a leased job is not claimed again while its lease
/// runs.
pub async fn claims_take_at_most_the_limit_and_lease_what_they_take<F: JobQueueFixture>(
    fixture: &F,
) {
    let creator = user(fixture, "ann").await;
    for _ in 0..3 {
        create(fixture, &creator).await;
    }
    let kind = JobKind::NotifyMarketCreated;
    let first = fixture.queue().claim(kind, 2, LEASE).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = claim(fixture, LEASE).await;
    assert_eq!(rest.len(), 4, "{rest:?}");
    assert!(
        ids(&first).is_disjoint(&ids(&rest)),
        "a leased job claimed again"
    );
    assert!(claim(fixture, LEASE).await.is_empty(), "all six are leased");
}

/// A completed job is never claimed again, even once its lease would have run out.
pub async fn completed_jobs_are_gone<F: JobQueueFixture>(fixture: &F) {
    one_market(fixture).await;
    let claimed = claim(fixture, Duration::ZERO).await;
    let (done, other) = (&claimed[0], &claimed[1]);
    fixture.queue().complete(done).await.unwrap();
    let again = reclaim(fixture, other.id).await;
    assert_eq!(again.attempt, 2);
    let left = claim(fixture, LEASE).await;
    assert!(ids(&left).is_empty(), "completed job came back: {left:?}");
    assert!(fixture.queue().dead(10).await.unwrap().is_empty());
}

/// When a lease runs out the job is claimed again as the next attempt; the overtaken attempt
/// completing, failing or being released late changes nothing, the current one's outcome counts.
pub async fn an_expired_lease_makes_a_job_claimable_and_fences_the_old_attempt<
    F: JobQueueFixture,
>(
    fixture: &F,
) {
    one_market(fixture).await;
    let claimed = claim(fixture, Duration::ZERO).await;
    let first = claimed[0].clone();
    fixture.queue().release(&claimed[1..]).await.unwrap();
    let second = reclaim(fixture, first.id).await;
    assert_eq!(second.attempt, first.attempt + 1);

    let queue = fixture.queue();
    queue.complete(&first).await.unwrap();
    queue.fail(&first, "late", Failure::Dead).await.unwrap();
    let retry = Failure::RetryIn(Duration::ZERO);
    queue.fail(&first, "late", retry).await.unwrap();
    queue.release(std::slice::from_ref(&first)).await.unwrap();
    assert!(
        queue.dead(10).await.unwrap().is_empty(),
        "a late failure counted"
    );
    let claimed = claim(fixture, LEASE).await;
    assert!(
        !ids(&claimed).contains(&first.id),
        "a late outcome ended the current attempt's lease"
    );
    queue.release(&claimed).await.unwrap();

    queue.complete(&second).await.unwrap();
    let claimed = claim(fixture, LEASE).await;
    assert!(
        !ids(&claimed).contains(&first.id),
        "completed job came back"
    );
}

/// A failure with a delay makes the job due again after the delay (not before), as the next
/// attempt.
pub async fn a_failure_retries_as_the_next_attempt_after_its_delay<F: JobQueueFixture>(
    fixture: &F,
) {
    one_market(fixture).await;
    let claimed = claim(fixture, LEASE).await;
    let (later, soon) = (&claimed[0], &claimed[1]);
    let queue = fixture.queue();
    let hour = Failure::RetryIn(Duration::from_secs(3600));
    queue.fail(later, "not yet", hour).await.unwrap();
    let now = Failure::RetryIn(Duration::ZERO);
    queue.fail(soon, "boom", now).await.unwrap();
    let retried = reclaim(fixture, soon.id).await;
    assert_eq!(retried.attempt, 2, "a retry is the next attempt");
    let claimed = claim(fixture, Duration::ZERO).await;
    assert!(claimed.is_empty(), "claimed before its delay: {claimed:?}");
    assert!(queue.dead(10).await.unwrap().is_empty());
}

/// A worker retries until its last attempt and then gives up (`Failure::Dead`): the job is
/// listed as dead with its attempts and last error, newest first, and never claimed again.
pub async fn jobs_die_after_their_last_attempt_and_are_listed_newest_first<F: JobQueueFixture>(
    fixture: &F,
) {
    const MAX_ATTEMPTS: u32 = 3;
    let market = one_market(fixture).await;
    let queue = fixture.queue();
    let claimed = claim(fixture, LEASE).await;
    let (first, second) = (claimed[0].clone(), claimed[1].clone());
    queue
        .fail(&first, "gave up at once", Failure::Dead)
        .await
        .unwrap();

    let mut job = second;
    while job.attempt < MAX_ATTEMPTS {
        let retry = Failure::RetryIn(Duration::ZERO);
        queue.fail(&job, "boom", retry).await.unwrap();
        job = reclaim(fixture, job.id).await;
    }
    queue
        .fail(&job, "boom at last", Failure::Dead)
        .await
        .unwrap();

    let dead = queue.dead(10).await.unwrap();
    let listed: Vec<(JobId, u32, &str)> = dead
        .iter()
        .map(|dead| (dead.id, dead.attempts, dead.last_error.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            (job.id, MAX_ATTEMPTS, "boom at last"),
            (first.id, 1, "gave up at once"),
        ],
        "newest first"
    );
    assert_eq!(
        (dead[0].kind, dead[0].subject),
        (job.kind, market.as_uuid())
    );
    assert!(dead[0].died_at >= dead[1].died_at);
    assert_eq!(queue.dead(1).await.unwrap().len(), 1, "at most the limit");
    assert!(
        claim(fixture, Duration::ZERO).await.is_empty(),
        "dead jobs claimed"
    );
}

/// `retry_dead` queues one dead job or all of them again, attempts starting over, and says how
/// many; live and unknown jobs are not touched.
pub async fn retry_dead_requeues_one_or_all_with_attempts_starting_over<F: JobQueueFixture>(
    fixture: &F,
) {
    let creator = user(fixture, "ann").await;
    create(fixture, &creator).await;
    create(fixture, &creator).await;
    let queue = fixture.queue();
    let claimed = claim(fixture, LEASE).await;
    for job in &claimed[..3] {
        queue.fail(job, "boom", Failure::Dead).await.unwrap();
    }
    let live = &claimed[3];
    assert_eq!(
        queue.retry_dead(Some(live.id)).await.unwrap(),
        0,
        "live job"
    );
    assert_eq!(queue.retry_dead(Some(JobId::new())).await.unwrap(), 0);

    assert_eq!(queue.retry_dead(Some(claimed[0].id)).await.unwrap(), 1);
    assert_eq!(queue.dead(10).await.unwrap().len(), 2);
    let requeued = claim(fixture, LEASE).await;
    assert_eq!(ids(&requeued), ids(&claimed[..1]), "only the one retried");
    assert_eq!(requeued[0].attempt, 1, "attempts start over");

    assert_eq!(queue.retry_dead(None).await.unwrap(), 2);
    assert!(queue.dead(10).await.unwrap().is_empty());
    let requeued = claim(fixture, LEASE).await;
    assert_eq!(ids(&requeued), ids(&claimed[1..3]));
    assert!(requeued.iter().all(|job| job.attempt == 1));
    assert_eq!(queue.retry_dead(None).await.unwrap(), 0, "none left");
}

/// Released jobs are due at once, and the attempt they were on does not count.
pub async fn released_jobs_are_due_at_once_and_keep_their_attempt_count<F: JobQueueFixture>(
    fixture: &F,
) {
    one_market(fixture).await;
    let claimed = claim(fixture, LEASE).await;
    fixture.queue().release(&claimed).await.unwrap();
    let again = claim(fixture, LEASE).await;
    assert_eq!(ids(&again), ids(&claimed));
    assert!(again.iter().all(|job| job.attempt == 1), "{again:?}");
    fixture.queue().release(&[]).await.unwrap();
}

/// A claim takes jobs of the kind it names only, however many of another kind are due.
pub async fn claims_take_only_the_kind_asked_for<F: JobQueueFixture>(fixture: &F) {
    let creator = user(fixture, "ann").await;
    for _ in 0..3 {
        create(fixture, &creator).await;
    }
    for kind in MARKET_KINDS {
        let claimed = fixture.queue().claim(kind, 100, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 3, "{kind}: {claimed:?}");
        assert!(claimed.iter().all(|job| job.kind == kind), "{claimed:?}");
    }
}

/// Of the due jobs of a kind, the one due longest comes first; each says how long it waited
/// since it was due, which is never more than it has existed.
pub async fn claims_come_longest_due_first_and_say_how_long_they_waited<F: JobQueueFixture>(
    fixture: &F,
) {
    let started = Instant::now();
    let creator = user(fixture, "ann").await;
    let first = create(fixture, &creator).await;
    let second = create(fixture, &creator).await;
    let kind = JobKind::NotifyMarketCreated;
    let claimed = fixture.queue().claim(kind, 1, LEASE).await.unwrap();
    assert_eq!(claimed[0].market_id(), first, "the job due longest first");
    let claimed = fixture.queue().claim(kind, 1, LEASE).await.unwrap();
    assert_eq!(claimed[0].market_id(), second);
    // One second of slack for a database whose clock is not the test's.
    let bound = started.elapsed() + Duration::from_secs(1);
    assert!(
        claimed[0].waited <= bound,
        "{claimed:?} waited past {bound:?}"
    );
}

/// A renewal extends a running attempt's lease (it is not claimable once its first lease is
/// over) and says which jobs it renewed; an overtaken or completed attempt is not renewed, and
/// renewing it changes nothing for the current one.
pub async fn renewals_extend_the_lease_of_the_current_attempt_only<F: JobQueueFixture>(
    fixture: &F,
) {
    one_market(fixture).await;
    let queue = fixture.queue();
    let claimed = claim(fixture, Duration::ZERO).await;
    let (kept, lapsed) = (claimed[0].clone(), claimed[1].clone());
    let renewed = queue
        .renew(std::slice::from_ref(&kept), LEASE)
        .await
        .unwrap();
    assert_eq!(renewed, [kept.id]);

    let overtaking = reclaim(fixture, lapsed.id).await;
    assert_eq!(overtaking.attempt, lapsed.attempt + 1);
    let claimed = claim(fixture, Duration::ZERO).await;
    assert!(claimed.is_empty(), "a renewed lease ran out: {claimed:?}");

    let stale = queue
        .renew(std::slice::from_ref(&lapsed), Duration::ZERO)
        .await
        .unwrap();
    assert!(stale.is_empty(), "an overtaken attempt renewed: {stale:?}");
    let claimed = claim(fixture, LEASE).await;
    assert!(
        claimed.is_empty(),
        "renewing an overtaken attempt shortened the current lease: {claimed:?}"
    );

    queue.complete(&kept).await.unwrap();
    let done = queue
        .renew(&[kept, overtaking.clone()], LEASE)
        .await
        .unwrap();
    assert_eq!(done, [overtaking.id], "a completed job renewed");
    assert!(queue.renew(&[], LEASE).await.unwrap().is_empty());
}

/// The stats of `kind`, from `stats`.
fn of_kind(stats: &[KindStats], kind: JobKind) -> &KindStats {
    stats
        .iter()
        .find(|stats| stats.kind == kind)
        .unwrap_or_else(|| panic!("no stats for {kind} in {stats:?}"))
}

/// Stats have every kind, in [`JobKind::ALL`]'s order, counting its jobs by state (queued, due
/// or not; running; dead), how long its oldest due job has waited, and its completions within
/// the window.
pub async fn stats_count_each_kind_by_state_with_its_completions<F: JobQueueFixture>(fixture: &F) {
    let started = Instant::now();
    let (notify, index) = (JobKind::NotifyMarketCreated, JobKind::IndexMarketEmbedding);
    let queue = fixture.queue();
    let empty = queue.stats(LEASE).await.unwrap();
    assert_eq!(empty, JobKind::ALL.map(KindStats::new), "nothing yet");

    let creator = user(fixture, "ann").await;
    for _ in 0..3 {
        create(fixture, &creator).await;
    }
    let done = queue.claim(notify, 1, LEASE).await.unwrap();
    queue.complete(&done[0]).await.unwrap();
    let died = queue.claim(notify, 1, LEASE).await.unwrap();
    queue.fail(&died[0], "boom", Failure::Dead).await.unwrap();
    let later = queue.claim(notify, 1, LEASE).await.unwrap();
    let hour = Failure::RetryIn(Duration::from_secs(3600));
    queue.fail(&later[0], "not yet", hour).await.unwrap();
    queue.claim(index, 1, LEASE).await.unwrap();

    let stats = queue.stats(LEASE).await.unwrap();
    let kinds: Vec<JobKind> = stats.iter().map(|stats| stats.kind).collect();
    assert_eq!(kinds, JobKind::ALL);
    let notified = of_kind(&stats, notify);
    let counts = (notified.queued, notified.running, notified.dead);
    assert_eq!(counts, (1, 0, 1), "{notified:?}");
    assert_eq!(notified.completed, 1);
    assert_eq!(notified.oldest_due, None, "the queued one is not due");
    let indexed = of_kind(&stats, index);
    let counts = (indexed.queued, indexed.running, indexed.dead);
    assert_eq!(counts, (2, 1, 0), "{indexed:?}");
    assert_eq!(indexed.completed, 0);
    let bound = started.elapsed() + Duration::from_secs(1);
    let oldest = indexed.oldest_due.expect("two index jobs are due");
    assert!(oldest <= bound, "due for {oldest:?}, past {bound:?}");
}

/// `prune` forgets the completions older than what it keeps (and only those), so the stats no
/// longer count them.
pub async fn prune_forgets_old_completions<F: JobQueueFixture>(fixture: &F) {
    one_market(fixture).await;
    let queue = fixture.queue();
    for job in claim(fixture, LEASE).await {
        queue.complete(&job).await.unwrap();
    }
    assert_eq!(queue.prune(LEASE).await.unwrap(), 0, "both are recent");
    let deadline = Instant::now() + PATIENCE;
    let mut pruned = 0;
    while pruned < 2 {
        pruned += queue.prune(Duration::ZERO).await.unwrap();
        assert!(Instant::now() < deadline, "completions never aged");
        crate::__private::tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = queue.stats(LEASE).await.unwrap();
    assert!(stats.iter().all(|stats| stats.completed == 0), "{stats:?}");
}

/// Storing an unverified user queues its verification email in the same write (a vouched one
/// gets none); a password reset request queues a reset email for a registered email, in any
/// case, and nothing for an unknown one.
pub async fn account_emails_are_queued_with_the_user_and_for_known_emails_only<
    F: JobQueueFixture,
>(
    fixture: &F,
) {
    let queue = fixture.queue();
    let ann = unverified_user(fixture, "ann").await;
    let _vouched = user(fixture, "bob").await;
    let verification = queue
        .claim(JobKind::SendEmailVerification, 10, LEASE)
        .await
        .unwrap();
    let subjects: Vec<_> = verification.iter().map(Job::user_id).collect();
    assert_eq!(
        subjects,
        [ann.id],
        "one verification email, the unverified user's"
    );
    let users = fixture.users();
    let upper = Email::parse("ANN@example.com").unwrap();
    users.request_password_reset(&upper).await.unwrap();
    let nobody = Email::parse("nobody@example.com").unwrap();
    users.request_password_reset(&nobody).await.unwrap();
    let resets = queue
        .claim(JobKind::SendPasswordReset, 10, LEASE)
        .await
        .unwrap();
    let subjects: Vec<_> = resets.iter().map(Job::user_id).collect();
    assert_eq!(
        subjects,
        [ann.id],
        "one reset email, none for the unknown address"
    );
}
