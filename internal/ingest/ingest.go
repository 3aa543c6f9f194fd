package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/offload/offload/wal"
)

const (
	// commitTimeout bounds one offset commit. Commits never use Run's
	// context: a commit for records already durable must not be abandoned
	// because the appliance is stopping.
	commitTimeout = 10 * time.Second
	// leaveTimeout bounds leaving the group on shutdown.
	leaveTimeout = 10 * time.Second
	// pollWake bounds one wait for records, see poll.
	pollWake = time.Second
	// budgetTick is how often a paused loop re-checks the byte budget.
	budgetTick = 100 * time.Millisecond
	// readyStaleness is how long after the last successful broker response
	// Ready still reports true. Heartbeats answer every 3 s and fetches at
	// least every FetchMaxWait (5 s), so a healthy client stays well inside.
	readyStaleness = 15 * time.Second
	// logEvery is the least interval between two log lines about the same
	// recurring problem (an unreachable broker, a failing partition).
	logEvery = 30 * time.Second
	// topicIDEvery is the least interval between two metadata requests
	// checking the topic ID of a topic whose fetches fail with
	// UNKNOWN_TOPIC_ID (topicid.go).
	topicIDEvery = 5 * time.Second
	// errorPause is how long the loop waits after a poll that brought
	// errors and no record: franz-go answers a fetch the broker refuses
	// (a deleted topic's UNKNOWN_TOPIC_ID) at once, and polling again
	// straight away spun hundreds of thousands of times a minute.
	errorPause = 200 * time.Millisecond
)

// Ingest consumes Kafka records into the WAL. Create it with New, run it
// with Run, and Close it after Run has returned.
type Ingest struct {
	opts  Options
	log   *slog.Logger
	cl    *kgo.Client
	limit *logLimiter

	running atomic.Bool
	// stopDeadline is, once Run is stopping, when its stop must be over
	// (Unix nanoseconds; 0 before): commits are bounded by it too.
	stopDeadline atomic.Int64

	// assigned is true from the group's first assignment until the
	// session is lost or left.
	assigned atomic.Bool
	// lastBrokerOK is the Unix nanosecond time of the last response read
	// without error from any broker.
	lastBrokerOK atomic.Int64

	records      atomic.Uint64
	appends      atomic.Uint64
	bytes        atomic.Uint64
	duplicates   atomic.Uint64
	commits      atomic.Uint64
	commitErrors atomic.Uint64
	fetchErrors  atomic.Uint64
	paused       atomic.Bool
	pauses       atomic.Uint64

	// mu guards pending and parts. The fetch loop and franz-go's
	// partition callbacks both take it; BlockRebalanceOnPoll already keeps
	// the callbacks from running while the loop is between poll and
	// commit, the mutex makes Stats safe too.
	mu sync.Mutex
	// pending holds, per owned partition, the offset to commit for
	// records that are durable in the WAL but whose commit has not
	// succeeded yet.
	pending map[wal.TopicPartition]kgo.EpochOffset
	parts   map[wal.TopicPartition]*partState
	// recreations is the last change of each topic whose topic ID
	// changed (topicid.go).
	recreations []TopicRecreation
	recreated   atomic.Uint64
	idChecks    *logLimiter // spaces the metadata requests of checkTopicID
	// checkIDs are the topics assigned since the last poll: their topic
	// ID is checked against the WAL's before records are taken.
	checkIDs map[string]bool
	// refetch are the topics found recreated whose consumption the loop
	// restarts from the new topic's first offset (restartRecreated).
	refetch map[string]bool
}

type partState struct {
	committed int64 // next offset to consume as committed to Kafka, -1 unknown
	hw        int64 // partition high watermark seen in the last fetch, -1 unknown
	lastErr   string
	// durable are when the records not committed yet became durable,
	// oldest first (uncommitted.go).
	durable []durableMark
}

// Stats are the ingest counters since New.
type Stats struct {
	// Records is the number of records appended to the WAL.
	Records uint64
	// Appends is the number of WAL appends (one per partition per poll);
	// Records/Appends is the average batch size.
	Appends uint64
	// Bytes is the number of bytes those appends wrote to the WAL (entry
	// keys and framed values).
	Bytes uint64
	// Duplicates is the number of fetched records the WAL dropped because
	// it already held their offsets (a re-delivery).
	Duplicates uint64
	// Commits is the number of successful offset commits.
	Commits uint64
	// CommitErrors is the number of failed offset commits. The offsets stay
	// pending and are committed later; the records are durable meanwhile.
	CommitErrors uint64
	// FetchErrors is the number of errors reported by fetches (per
	// partition, or for the whole client such as a failed group session).
	FetchErrors uint64
	// Paused is true while fetching is paused because the data directory
	// is past its byte budget.
	Paused bool
	// Pauses is the number of times fetching was paused for the budget.
	Pauses uint64
	// Partitions describes the partitions currently assigned, sorted by
	// topic and partition.
	Partitions []PartitionStats
	// TopicRecreations counts topics fetched under a new topic ID;
	// Recreated holds the last such change of each topic, by topic.
	TopicRecreations uint64
	Recreated        []TopicRecreation
}

// PartitionStats describes one assigned partition.
type PartitionStats struct {
	Topic     string
	Partition int32
	// Committed is the committed offset (the next offset to consume), -1
	// if no commit is known.
	Committed int64
	// HighWatermark is the partition's high watermark as of the last fetch,
	// -1 if none was seen yet.
	HighWatermark int64
	// Lag is HighWatermark - Committed, -1 if either is unknown.
	Lag int64
	// Durable is the offset after the last one the WAL holds durably
	// (what was fetched), -1 if it holds none of the partition. In
	// end-to-end delivery it runs ahead of Committed by what waits for
	// the warehouse.
	Durable int64
	// LastError is the last fetch error of this partition, "" if none.
	LastError string
	// UncommittedAge is how long the oldest record durable in the WAL
	// whose offset is not committed to Kafka has waited (0 when every
	// durable offset is committed). In end-to-end delivery it includes
	// the wait for the warehouse load.
	UncommittedAge time.Duration
}

// New validates opts, builds the TLS and SASL settings and creates the Kafka
// client. It starts no goroutine of its own and the client joins the group
// only when Run starts. Errors name the configuration option at fault.
func New(opts Options) (*Ingest, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ClientID == "" {
		opts.ClientID = "offload"
	}
	fetchMax := opts.FetchMaxBytes
	if fetchMax == 0 {
		fetchMax = DefaultFetchMaxBytes
	}
	in := &Ingest{
		opts:     opts,
		log:      opts.Logger.With("component", "ingest"),
		limit:    newLogLimiter(logEvery),
		pending:  map[wal.TopicPartition]kgo.EpochOffset{},
		parts:    map[wal.TopicPartition]*partState{},
		idChecks: newLogLimiter(topicIDEvery),
		checkIDs: map[string]bool{},
		refetch:  map[string]bool{},
	}
	secure, err := SecurityOpts(opts.TLS, opts.SASL)
	if err != nil {
		return nil, err
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		kgo.ClientID(opts.ClientID),
		// No ConsumeTopics here: the member joins the group only when
		// Run adds the topics, not while the appliance is still
		// recovering after New.
		kgo.ConsumerGroup(opts.Group),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		// Offsets are committed only after the WAL made the records
		// durable, never on a timer.
		kgo.DisableAutoCommit(),
		// A revoke waits for AllowRebalance, which the loop calls after
		// the commit: a partition cannot move between append and commit.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(in.onAssigned),
		kgo.OnPartitionsRevoked(in.onRevoked),
		kgo.OnPartitionsLost(in.onLost),
		kgo.AdjustFetchOffsetsFn(in.adjustOffsets),
		kgo.FetchMaxBytes(fetchMax),
		kgo.FetchMaxPartitionBytes(min(fetchMax, maxPartitionBytes)),
		kgo.MaxConcurrentFetches(maxConcurrentFetches),
		// Records of aborted transactions never happened; do not take
		// custody of them.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.WithHooks(hooks{in}),
		kgo.WithLogger(kgoLogger{in: in}),
	}
	if opts.InstanceID != "" {
		kopts = append(kopts, kgo.InstanceID(opts.InstanceID))
	}
	if opts.SessionTimeout > 0 {
		kopts = append(kopts, kgo.SessionTimeout(opts.SessionTimeout))
	}
	if fetchMax > 100<<20 {
		kopts = append(kopts, kgo.BrokerMaxReadBytes(fetchMax+1<<20))
	}
	kopts = append(kopts, secure...)
	if !opts.TLS.Enabled && opts.SASL.Mechanism != "" && !strings.EqualFold(opts.SASL.Mechanism, "none") {
		in.log.Warn("ingest: SASL without TLS: credentials and data cross the network unencrypted; set kafka.tls.enabled",
			"mechanism", opts.SASL.Mechanism)
	}
	kopts = append(kopts, opts.ExtraOpts...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("ingest: cannot create the Kafka client: %w", err)
	}
	in.cl = cl
	return in, nil
}

// Run consumes until ctx is cancelled, then commits what is durable, leaves
// the group and returns nil. It returns an error only if the WAL failed an
// append (the offsets of that batch are not committed) or if Run was called
// twice. An unreachable broker is retried, logged and reported by Ready,
// never returned.
func (in *Ingest) Run(ctx context.Context) error {
	if !in.running.CompareAndSwap(false, true) {
		return errors.New("ingest: BUG: Run called more than once")
	}
	in.log.Info("ingest: consuming", "brokers", in.opts.Brokers, "topics", in.opts.Topics, "group", in.opts.Group)
	in.cl.AddConsumeTopics(in.opts.Topics...)
	var runErr error
	for ctx.Err() == nil {
		if in.waitBudget(ctx) {
			continue // the budget wait may have ended by cancellation
		}
		fetches := in.poll(ctx)
		if err := in.process(fetches); err != nil {
			runErr = err
			break
		}
		// Only now, with the batch durable and its offsets committed,
		// may a blocked rebalance revoke partitions.
		in.cl.AllowRebalance()
		in.restartRecreated()
		if fetches.NumRecords() == 0 && len(fetches.Errors()) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(errorPause):
			}
		}
	}
	in.stop(runErr)
	return runErr
}

// poll returns what franz-go has buffered, waiting at most pollWake so that
// a pending commit (one that failed, or one set up on assignment) is retried
// even when no record arrives.
func (in *Ingest) poll(ctx context.Context) kgo.Fetches {
	pctx, cancel := context.WithTimeout(ctx, pollWake)
	defer cancel()
	return in.cl.PollFetches(pctx)
}

// stop ends a Run, in data-flow order. Each step has its own timeout and
// all of them Options.StopTimeout, so a stop is bounded even when the
// brokers are gone.
func (in *Ingest) stop(runErr error) {
	timeout := in.opts.StopTimeout
	if timeout <= 0 {
		timeout = commitTimeout + leaveTimeout
	}
	deadline := time.Now().Add(timeout)
	in.stopDeadline.Store(deadline.UnixNano())
	ctx, cancel := in.commitContext()
	defer cancel()
	// 1. Commit what is durable (in end-to-end delivery: loaded) and not
	//    yet committed: the last pass's commit may have failed, or a WAL
	//    failure may have hit one partition while the others were
	//    appended.
	in.takeLoaded()
	if err := in.commit(ctx, nil); err != nil {
		in.log.Warn("ingest: cannot commit offsets on stop; Kafka will re-deliver those records and the WAL will drop them", "err", err)
	}
	// 2. Release the poll gate, or the leave's revoke would wait forever.
	in.cl.AllowRebalance()
	// 3. Leave the group so the partitions move to another member now
	//    instead of after the session timeout. A member that never
	//    joined has nothing to leave. A static member (InstanceID) only
	//    stops its session here, running OnPartitionsRevoked, and keeps
	//    its partitions for a restart within the session timeout.
	if member, _ := in.cl.GroupMetadata(); member != "" {
		lctx, lcancel := context.WithDeadline(context.Background(), earliest(time.Now().Add(leaveTimeout), deadline))
		if err := in.cl.LeaveGroupContext(lctx); err != nil {
			in.log.Warn("ingest: cannot leave the consumer group cleanly; its partitions move after the session timeout", "group", in.opts.Group, "err", err)
		}
		lcancel()
	}
	in.assigned.Store(false)
	s := in.Stats()
	args := []any{"records", s.Records, "bytes", s.Bytes, "duplicates", s.Duplicates,
		"commits", s.Commits, "commit_errors", s.CommitErrors, "fetch_errors", s.FetchErrors, "pauses", s.Pauses}
	if runErr != nil {
		in.log.Error("ingest: stopped on a WAL failure", append(args, "err", runErr)...)
		return
	}
	in.log.Info("ingest: stopped", args...)
}

// Close closes the Kafka client: call it after Run has returned (or if Run
// was never called). Run has committed the offsets and left the group by
// then; a leave that is still pending (a rebalancing group) is given up
// when ctx is done, so that franz-go's Client.Close, which waits for the
// leave, does not wait for the group (Client.Close's doc); what it still
// waits for, the revoke's offset commit, is bounded by commitContext.
// Close returns once the client's goroutines have, or, should the client
// still be closing when ctx is done, then: a stop that came while the group
// was being joined once left franz-go's group management running after the
// leave, and Client.Close waiting for it past any shutdown grace.
func (in *Ingest) Close(ctx context.Context) {
	in.cl.AllowRebalance()
	if member, _ := in.cl.GroupMetadata(); member != "" {
		if err := in.cl.LeaveGroupContext(ctx); err != nil {
			in.log.Warn("ingest: gave up leaving the consumer group on close; its partitions move after the session timeout (offsets are committed)",
				"group", in.opts.Group, "err", err)
		}
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		in.cl.Close()
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		in.log.Warn("ingest: the Kafka client was still closing when the shutdown's time ran out; stopping without it (offsets are committed)",
			"group", in.opts.Group, "err", ctx.Err())
	}
}

// Ready reports whether the consumer is working: the group has assigned
// this member its partitions (possibly none, when the group has more
// members than partitions) and a broker answered within the last 15 s. It is
// false while the brokers are unreachable.
func (in *Ingest) Ready() bool {
	if !in.assigned.Load() {
		return false
	}
	last := in.lastBrokerOK.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < readyStaleness
}

// Stats returns the counters and the per-partition state.
func (in *Ingest) Stats() Stats {
	s := Stats{
		Records:      in.records.Load(),
		Appends:      in.appends.Load(),
		Bytes:        in.bytes.Load(),
		Duplicates:   in.duplicates.Load(),
		Commits:      in.commits.Load(),
		CommitErrors: in.commitErrors.Load(),
		FetchErrors:  in.fetchErrors.Load(),
		Paused:       in.paused.Load(),
		Pauses:       in.pauses.Load(),
	}
	now := time.Now()
	in.mu.Lock()
	for tp, p := range in.parts {
		ps := PartitionStats{Topic: tp.Topic, Partition: tp.Partition, Committed: p.committed, HighWatermark: p.hw, Lag: -1, LastError: p.lastErr,
			UncommittedAge: p.uncommittedAge(now)}
		if p.committed >= 0 && p.hw >= 0 {
			ps.Lag = max(p.hw-p.committed, 0)
		}
		s.Partitions = append(s.Partitions, ps)
	}
	s.TopicRecreations = in.recreated.Load()
	s.Recreated = slices.SortedFunc(slices.Values(in.recreations), func(a, b TopicRecreation) int { return strings.Compare(a.Topic, b.Topic) })
	in.mu.Unlock()
	for i := range s.Partitions {
		ps := &s.Partitions[i]
		ps.Durable = -1
		if hw := in.opts.WAL.HighWater(in.walPartition(ps.Topic, ps.Partition)); hw >= 0 {
			ps.Durable = hw + 1
		}
	}
	slices.SortFunc(s.Partitions, func(a, b PartitionStats) int {
		return wal.TopicPartition{Topic: a.Topic, Partition: a.Partition}.Compare(wal.TopicPartition{Topic: b.Topic, Partition: b.Partition})
	})
	return s
}

// append makes b durable in the WAL and reports it to OnDurable.
func (in *Ingest) append(b *batch) {
	start := time.Now()
	b.res, b.err = in.opts.WAL.Append(b.tp, b.recs)
	if b.err == nil && in.opts.OnDurable != nil {
		in.opts.OnDurable(time.Since(start), b.recs, time.Now())
	}
}

// waitBudget pauses fetching while the data directory is past its budget.
// It returns true if it paused (the caller re-checks ctx), false at once if
// the budget is fine.
func (in *Ingest) waitBudget(ctx context.Context) bool {
	if in.opts.OverBudget == nil || !in.opts.OverBudget() {
		return false
	}
	// Pausing the topics stops new fetches; not polling leaves at most
	// the already buffered fetches in memory. Kafka keeps the rest.
	in.cl.PauseFetchTopics(in.opts.Topics...)
	in.paused.Store(true)
	in.pauses.Add(1)
	// At the budget, pause and resume alternate with every truncation:
	// one line per episode would flood the log, so they are rate-limited.
	in.warnEvery("pause", "ingest: data directory past its byte budget: paused fetching from Kafka (Kafka keeps the data) until the backlog drains",
		"wal_bytes", in.opts.WAL.Bytes(), "pauses", in.pauses.Load())
	t := time.NewTicker(budgetTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return true // stay paused: we are stopping
		case <-t.C:
		}
		if !in.opts.OverBudget() {
			break
		}
	}
	in.cl.ResumeFetchTopics(in.opts.Topics...)
	in.paused.Store(false)
	in.infoEvery("resume", "ingest: data directory back under its byte budget: resumed fetching", "wal_bytes", in.opts.WAL.Bytes())
	return true
}

// batch is one partition's records of one poll.
type batch struct {
	tp wal.TopicPartition // with the WAL incarnation (route)
	// latest is true for the topic's latest incarnation: only its offsets
	// are committed to Kafka.
	latest bool
	recs   []wal.Record
	last   *kgo.Record // the last record, for the commit's offset and leader epoch
	res    wal.AppendResult
	err    error
}

// process appends one poll's records to the WAL and commits their offsets.
// It returns an error only for a failed append.
func (in *Ingest) process(fetches kgo.Fetches) error {
	fetches.EachError(in.fetchError)
	ids := in.noteTopicIDs(fetches)
	var batches []*batch
	byTP := map[wal.TopicPartition]*batch{}
	fetches.EachTopic(func(t kgo.FetchTopic) {
		inc, latest, ok := in.route(t.Topic, t.TopicID)
		for _, p := range t.Partitions {
			in.collect(byTP, &batches, t.Topic, inc, latest, ok, p)
		}
	})
	if len(batches) == 0 {
		return in.commitPending()
	}

	// Append every partition's batch. Concurrent appends share one fsync
	// through Pebble's group commit.
	if len(batches) == 1 {
		in.append(batches[0])
	} else {
		var wg sync.WaitGroup
		for _, b := range batches {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in.append(b)
			}()
		}
		wg.Wait()
	}

	var appendErr error
	in.mu.Lock()
	for _, b := range batches {
		if b.err != nil {
			if appendErr == nil {
				appendErr = fmt.Errorf("ingest: cannot append %d records of %s (offsets %d-%d) to the WAL; their offsets are not committed: %w",
					len(b.recs), b.tp, b.recs[0].Offset, b.last.Offset, b.err)
			}
			continue
		}
		in.records.Add(uint64(b.res.Appended))
		in.appends.Add(1)
		in.bytes.Add(uint64(b.res.Bytes))
		if b.res.Duplicates > 0 {
			in.duplicates.Add(uint64(b.res.Duplicates))
		}
		// Durable: this offset may be committed, unless the records
		// are of a deleted topic (an earlier incarnation), or in
		// end-to-end delivery, before their load (takeLoaded).
		if b.latest && b.res.Appended > 0 {
			in.markDurable(kafkaPartition(b.tp), b.last.Offset+1, time.Now())
		}
		if b.latest && in.opts.Loaded == nil {
			in.pending[kafkaPartition(b.tp)] = kgo.EpochOffset{Epoch: b.last.LeaderEpoch, Offset: b.last.Offset + 1}
		}
	}
	in.mu.Unlock()
	// A partition's first append gives it WAL state: record its topic ID
	// now rather than at its next fetch.
	appended := map[string]bool{}
	for _, b := range batches {
		if b.err == nil && b.res.Appended > 0 && !appended[b.tp.Topic] {
			appended[b.tp.Topic] = true
			if id, ok := ids[b.tp.Topic]; ok {
				in.noteTopicID(b.tp.Topic, id)
			}
		}
	}
	for _, b := range batches {
		if b.err == nil && b.res.Duplicates > 0 {
			// Fetching starts after the WAL's high water, so Kafka
			// re-delivers records the WAL holds only when the start
			// offset was reset (out of range) or the topic was
			// recreated, whose new records the old high water hides.
			in.warnEvery("dup "+b.tp.String(), "ingest: dropped fetched records at or below the WAL's high water (a re-delivery): compare the partition's offsets in Kafka with wal_high_water",
				"partition", b.tp.String(), "records", b.res.Duplicates, "first", b.recs[0].Offset, "wal_high_water", in.opts.WAL.HighWater(b.tp))
		}
	}
	if appendErr != nil {
		return appendErr
	}
	return in.commitPending()
}

// collect adds the records of one fetched partition of topic to its batch
// in byTP (and batches), for WAL incarnation inc (route); ok false leaves
// them in Kafka, to be fetched again.
func (in *Ingest) collect(byTP map[wal.TopicPartition]*batch, batches *[]*batch, topic string, inc uint32, latest, ok bool, p kgo.FetchPartition) {
	tp := wal.TopicPartition{Topic: topic, Incarnation: inc, Partition: p.Partition}
	if topic != "" && latest && ok && p.HighWatermark >= 0 {
		in.setHighWatermark(kafkaPartition(tp), p.HighWatermark)
	}
	if len(p.Records) == 0 {
		return
	}
	if !ok {
		in.infoEvery("skip "+topic, "ingest: not taking records of a recreated topic fetched before its consumption restarts; they are fetched again",
			"topic", topic, "partition", p.Partition, "records", len(p.Records), "first", p.Records[0].Offset)
		return
	}
	b := byTP[tp]
	if b == nil {
		b = &batch{tp: tp, latest: latest, recs: make([]wal.Record, 0, len(p.Records))}
		byTP[tp] = b
		*batches = append(*batches, b)
	}
	for _, r := range p.Records {
		if b.last != nil && r.Offset <= b.last.Offset {
			// franz-go returns each partition's records in order
			// once; this guards the WAL's ordering requirement.
			in.duplicates.Add(1)
			in.warnEvery("order "+tp.String(), "ingest: fetched an offset out of order; dropping it (the WAL holds it or will)", "partition", tp.String(), "offset", r.Offset, "after", b.last.Offset)
			continue
		}
		b.recs = append(b.recs, wal.Record{Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value})
		b.last = r
	}
}

// kafkaPartition returns tp without its WAL incarnation: the key of the
// ingest's per-partition state and commits, which Kafka keeps by name.
func kafkaPartition(tp wal.TopicPartition) wal.TopicPartition {
	return wal.TopicPartition{Topic: tp.Topic, Partition: tp.Partition}
}

// commitContext bounds one offset commit: by commitTimeout and, once Run
// is stopping, by the stop's deadline.
func (in *Ingest) commitContext() (context.Context, context.CancelFunc) {
	d := time.Now().Add(commitTimeout)
	if ns := in.stopDeadline.Load(); ns != 0 {
		d = earliest(d, time.Unix(0, ns))
	}
	return context.WithDeadline(context.Background(), d)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// commitPending commits every pending offset with its own timeout. A failed
// commit is logged and retried on the next pass, never fatal: the records
// are durable.
func (in *Ingest) commitPending() error {
	in.takeLoaded()
	in.mu.Lock()
	n := len(in.pending)
	in.mu.Unlock()
	if n == 0 {
		return nil
	}
	ctx, cancel := in.commitContext()
	defer cancel()
	if err := in.commit(ctx, nil); err != nil {
		in.warnEvery("commit", "ingest: cannot commit offsets; the records are durable in the WAL, the commit is retried on the next pass", "group", in.opts.Group, "err", err)
	}
	return nil
}

// commit commits the pending offsets of the partitions keep accepts (all
// if keep is nil). Partitions whose commit succeeded leave pending.
func (in *Ingest) commit(ctx context.Context, keep func(wal.TopicPartition) bool) error {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	in.mu.Lock()
	for tp, eo := range in.pending {
		if keep != nil && !keep(tp) {
			continue
		}
		if offsets[tp.Topic] == nil {
			offsets[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.Topic][tp.Partition] = eo
	}
	in.mu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	var rerr error
	in.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			rerr = err
			return
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				tp := wal.TopicPartition{Topic: t.Topic, Partition: p.Partition}
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					if rerr == nil {
						rerr = fmt.Errorf("%s: %w", tp, err)
					}
					continue
				}
				eo, ok := offsets[t.Topic][p.Partition]
				if !ok {
					continue
				}
				if cur, ok := in.pending[tp]; ok && cur == eo {
					delete(in.pending, tp)
				}
				if ps := in.parts[tp]; ps != nil {
					ps.committed = eo.Offset
					ps.committedUpTo(eo.Offset)
				}
			}
		}
	})
	if rerr != nil {
		in.commitErrors.Add(1)
		return rerr
	}
	in.commits.Add(1)
	return nil
}

func (in *Ingest) setHighWatermark(tp wal.TopicPartition, hw int64) {
	in.mu.Lock()
	if ps := in.parts[tp]; ps != nil {
		ps.hw = hw
	}
	in.mu.Unlock()
}

// fetchError logs and counts one error reported by a poll.
func (in *Ingest) fetchError(topic string, partition int32, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrClientClosed) {
		return // our own stop
	}
	in.fetchErrors.Add(1)
	var gs *kgo.ErrGroupSession
	if errors.As(err, &gs) || topic == "" {
		in.warnEvery("group", "ingest: consumer group session failed; retrying: check kafka.brokers, the group's ACLs and kafka.sasl settings",
			"group", in.opts.Group, "brokers", in.opts.Brokers, "err", err)
		return
	}
	tp := wal.TopicPartition{Topic: topic, Partition: partition}
	in.mu.Lock()
	if ps := in.parts[tp]; ps != nil {
		ps.lastErr = err.Error()
	}
	in.mu.Unlock()
	in.warnEvery("fetch "+tp.String(), "ingest: fetch error; records of this partition are not skipped, fetching is retried or the partition waits for an operator",
		"partition", tp.String(), "err", err)
}

// onAssigned runs when the group assigns partitions (also with none new).
func (in *Ingest) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	in.mu.Lock()
	n := 0
	for t, ps := range assigned {
		for _, p := range ps {
			tp := wal.TopicPartition{Topic: t, Partition: p}
			if in.parts[tp] == nil {
				in.parts[tp] = &partState{committed: -1, hw: -1}
			}
			n++
		}
	}
	for t := range assigned {
		in.checkIDs[t] = true
	}
	in.mu.Unlock()
	in.assigned.Store(true)
	if n > 0 {
		in.log.Info("ingest: partitions assigned", "group", in.opts.Group, "partitions", assigned)
	}
}

// onRevoked runs before partitions move to another member (and when the
// group is left). What is durable for them is committed now: afterwards
// this member may not commit for them.
func (in *Ingest) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if len(revoked) == 0 {
		return
	}
	set := toSet(revoked)
	in.takeLoaded()
	ctx, cancel := in.commitContext()
	defer cancel()
	if err := in.commit(ctx, func(tp wal.TopicPartition) bool { return set[tp] }); err != nil {
		in.log.Warn("ingest: cannot commit offsets of revoked partitions; their new owner re-fetches records this WAL already holds",
			"partitions", revoked, "err", err)
	}
	in.forget(set)
	in.log.Info("ingest: partitions revoked", "group", in.opts.Group, "partitions", revoked)
}

// onLost runs when the group session failed: the partitions may already
// belong to another member, so nothing is committed for them.
func (in *Ingest) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	in.assigned.Store(false)
	if len(lost) == 0 {
		return
	}
	set := toSet(lost)
	in.forget(set)
	in.log.Warn("ingest: partitions lost with the group session; uncommitted offsets will be re-fetched by their next owner (this WAL drops what it already holds)",
		"group", in.opts.Group, "partitions", lost)
}

func (in *Ingest) forget(set map[wal.TopicPartition]bool) {
	in.mu.Lock()
	for tp := range set {
		delete(in.pending, tp)
		delete(in.parts, tp)
	}
	in.mu.Unlock()
}

func toSet(m map[string][]int32) map[wal.TopicPartition]bool {
	set := map[wal.TopicPartition]bool{}
	for t, ps := range m {
		for _, p := range ps {
			set[wal.TopicPartition{Topic: t, Partition: p}] = true
		}
	}
	return set
}

// adjustOffsets starts each assigned partition at max(committed offset, WAL
// high water + 1): records the WAL made durable before a crash prevented
// their commit are not fetched again.
func (in *Ingest) adjustOffsets(_ context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for t, ps := range offsets {
		for p, o := range ps {
			tp := wal.TopicPartition{Topic: t, Partition: p}
			committed := o.EpochOffset().Offset // < 0: no commit (the start-offset sentinel)
			in.mu.Lock()
			if ps := in.parts[tp]; ps != nil && committed >= 0 {
				ps.committed = committed
			}
			in.mu.Unlock()
			wtp := in.walPartition(t, p)
			hw := in.opts.WAL.HighWater(wtp)
			if wtp.Incarnation > 0 && hw < 0 {
				// A recreated topic the WAL took nothing of yet: a
				// committed offset can be the deleted topic's (a
				// commit that reached Kafka after the deletion).
				ps[p] = kgo.NewOffset().AtStart().WithEpoch(-1)
				in.log.Info("ingest: starting a recreated topic at its first offset", "partition", wtp.String(), "committed", committed)
				continue
			}
			if hw < 0 || committed > hw {
				continue
			}
			// The epoch is cleared: it belonged to the committed offset,
			// and with -1 franz-go skips its data-loss check for a
			// position it did not commit itself.
			ps[p] = kgo.NewOffset().At(hw + 1).WithEpoch(-1)
			// Those records are durable: commit their offsets on the
			// next pass even if nothing new arrives (in end-to-end
			// delivery, once they are loaded). How long they have
			// waited is unknown: they count from now.
			in.mu.Lock()
			if in.opts.Loaded == nil {
				in.pending[tp] = kgo.EpochOffset{Epoch: -1, Offset: hw + 1}
			}
			in.markDurable(tp, hw+1, time.Now())
			in.mu.Unlock()
			in.log.Info("ingest: starting after the WAL's high water: the WAL holds records whose offsets were not committed",
				"partition", tp.String(), "committed", committed, "start", hw+1)
		}
	}
	return offsets, nil
}
