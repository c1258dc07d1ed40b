// Package faulty wraps a storage.Store and injects failures, for tests of the code
// above storage (retries, engine error paths) and of backends' error handling.
//
// A Store is given Rules. Each call is offered to the rules in order; the first rule
// that fires decides what goes wrong with the call, and the rules after it do not see
// the call. A call no rule fires on goes to the inner store unchanged.
//
//	st := faulty.New(mem.New(),
//		faulty.Rule{Op: faulty.Put, Count: 2},                            // the next 2 Puts fail
//		faulty.Rule{Op: faulty.Get, Fault: faulty.Truncate, Offset: 100}, // Get bodies break after 100 bytes
//		faulty.Rule{Op: faulty.Stat, Prob: 0.3, Seed: 1},                 // 30% of Stats fail, reproducibly
//	)
//
// A Store is safe for concurrent use; with concurrent calls, which call a rule fires on
// depends on scheduling.
package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"

	"github.com/pgb-project/pgb/internal/storage"
)

// ErrInjected is the error a rule injects when its Err is nil.
var ErrInjected = errors.New("faulty: injected failure")

// Op names a Store method.
type Op string

// The operations rules can target.
const (
	Put    Op = "put"
	Get    Op = "get"
	Stat   Op = "stat"
	List   Op = "list"
	Delete Op = "delete"
)

// Fault is what a rule does to a call it fires on.
type Fault int

const (
	// Fail returns Err without calling the inner store.
	Fail Fault = iota
	// FailAfter calls the inner store and then returns Err even though the call
	// succeeded: a lost acknowledgement. A Get's reader is closed; a List delivers
	// everything first.
	FailAfter
	// Truncate breaks the data stream with Err after Offset bytes or entries: a Get
	// body (Err defaults to io.ErrUnexpectedEOF there), the reader a Put hands to the
	// inner store (so it sees a failing source), or a List after Offset entries.
	// Stat and Delete treat it as Fail.
	Truncate
	// Corrupt flips every bit of the byte at Offset of a Get body, or of the data a
	// Put stores (nothing when the data is shorter); the call itself succeeds. Stat,
	// List and Delete pass through unharmed.
	Corrupt
	// Hang blocks the call until its context is done and then fails with the
	// context's error, without calling the inner store: a stuck connection.
	Hang
	// Stall lets a Get open and deliver Offset bytes of its body, then blocks the
	// body's Read until the Get's context is done and fails with the context's
	// error: a connection that went silent mid-body. Other operations treat it as Hang.
	Stall
)

// Rule says which calls fail and how. The zero Rule (apart from Op) fails every call
// of Op with ErrInjected.
type Rule struct {
	Op     Op      // the operation the rule applies to
	Key    string  // if set, only calls whose key (List: prefix) begins with Key
	Skip   int     // let the first Skip matching calls through unharmed
	Count  int     // fire at most Count times; 0 means no limit
	Prob   float64 // if in (0, 1), fire on each eligible call with this probability
	Seed   uint64  // seeds the rule's random source when Prob is used
	Fault  Fault   // what happens; Fail by default
	Err    error   // the injected error; ErrInjected (Truncate on Get: io.ErrUnexpectedEOF) if nil
	Offset int64   // Truncate, Corrupt: where in the data stream
	// OnFire, if set, is called each time the rule fires, with the call's operation
	// and key, before the fault takes effect (for a Hang: before it blocks).
	OnFire func(op Op, key string)
}

// rule is a Rule with its counters.
type rule struct {
	Rule
	seen, fired int
	rnd         *rand.Rand
}

// Store is a storage.Store that injects faults into calls to an inner store.
type Store struct {
	inner storage.Store

	mu    sync.Mutex
	rules []*rule
	calls map[Op]int
	fired map[Op]int
}

var _ storage.Store = (*Store)(nil)

// New wraps inner with the given rules.
func New(inner storage.Store, rules ...Rule) *Store {
	s := &Store{inner: inner, calls: make(map[Op]int), fired: make(map[Op]int)}
	s.Add(rules...)
	return s
}

// Add appends rules after the existing ones.
func (s *Store) Add(rules ...Rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rules {
		rr := &rule{Rule: r}
		if r.Prob > 0 && r.Prob < 1 {
			rr.rnd = rand.New(rand.NewPCG(r.Seed, r.Seed))
		}
		s.rules = append(s.rules, rr)
	}
}

// Reset removes all rules and zeroes the counters.
func (s *Store) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = nil
	clear(s.calls)
	clear(s.fired)
}

// Calls reports how many calls of op the store has received, faulted or not.
func (s *Store) Calls(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Faults reports how many calls of op a rule fired on.
func (s *Store) Faults(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fired[op]
}

// Inner returns the wrapped store, for checking what really got stored.
func (s *Store) Inner() storage.Store { return s.inner }

// match counts the call and returns the rule that fires on it, if any, after calling
// its OnFire.
func (s *Store) match(op Op, key string) *Rule {
	r := s.matchLocked(op, key)
	if r != nil && r.OnFire != nil {
		r.OnFire(op, key)
	}
	return r
}

func (s *Store) matchLocked(op Op, key string) *Rule {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	for _, r := range s.rules {
		if r.Op != op || !strings.HasPrefix(key, r.Key) {
			continue
		}
		r.seen++
		if r.seen <= r.Skip || (r.Count > 0 && r.fired >= r.Count) {
			continue
		}
		if r.rnd != nil && r.rnd.Float64() >= r.Prob {
			continue
		}
		r.fired++
		s.fired[op]++
		rule := r.Rule
		if rule.Err == nil {
			rule.Err = ErrInjected
			if op == Get && rule.Fault == Truncate {
				rule.Err = io.ErrUnexpectedEOF
			}
		}
		return &rule
	}
	return nil
}

func injected(op Op, key string, err error) error {
	return fmt.Errorf("faulty: %s %q: %w", op, key, err)
}

// hang waits for ctx to be done.
func hang(ctx context.Context, op Op, key string) error {
	<-ctx.Done()
	return injected(op, key, ctx.Err())
}

// Put applies the first matching rule, then calls the inner Put.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	rule := s.match(Put, key)
	switch {
	case rule != nil && (rule.Fault == Hang || rule.Fault == Stall):
		return hang(ctx, Put, key)
	case rule == nil:
		return s.inner.Put(ctx, key, r, opts)
	case rule.Fault == Corrupt:
		return s.inner.Put(ctx, key, &corruptingReader{r: r, at: rule.Offset}, opts)
	case rule.Fault == Truncate:
		return s.inner.Put(ctx, key, &breakingReader{r: r, left: rule.Offset, err: rule.Err}, opts)
	case rule.Fault == FailAfter:
		if err := s.inner.Put(ctx, key, r, opts); err != nil {
			return err
		}
	}
	return injected(Put, key, rule.Err)
}

// Get applies the first matching rule, then calls the inner Get.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rule := s.match(Get, key)
	if rule != nil && rule.Fault == Fail {
		return nil, injected(Get, key, rule.Err)
	}
	if rule != nil && rule.Fault == Hang {
		return nil, hang(ctx, Get, key)
	}
	rc, err := s.inner.Get(ctx, key, off, length)
	if err != nil || rule == nil {
		return rc, err
	}
	switch rule.Fault {
	case Truncate:
		return &readCloser{Reader: &breakingReader{r: rc, left: rule.Offset, err: rule.Err}, Closer: rc}, nil
	case Stall:
		return &readCloser{Reader: &stallingReader{ctx: ctx, r: rc, left: rule.Offset, key: key}, Closer: rc}, nil
	case Corrupt:
		return &readCloser{Reader: &corruptingReader{r: rc, at: rule.Offset}, Closer: rc}, nil
	default: // FailAfter
		_ = rc.Close() // nothing read: the injected error is the result
		return nil, injected(Get, key, rule.Err)
	}
}

// Stat applies the first matching rule, then calls the inner Stat.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	rule := s.match(Stat, key)
	if rule == nil || rule.Fault == Corrupt {
		return s.inner.Stat(ctx, key)
	}
	if rule.Fault == Hang || rule.Fault == Stall {
		return storage.ObjectInfo{}, hang(ctx, Stat, key)
	}
	if rule.Fault == FailAfter {
		if _, err := s.inner.Stat(ctx, key); err != nil {
			return storage.ObjectInfo{}, err
		}
	}
	return storage.ObjectInfo{}, injected(Stat, key, rule.Err)
}

// List applies the first matching rule, then calls the inner List.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	rule := s.match(List, prefix)
	switch {
	case rule != nil && (rule.Fault == Hang || rule.Fault == Stall):
		return hang(ctx, List, prefix)
	case rule == nil || rule.Fault == Corrupt:
		return s.inner.List(ctx, prefix, fn)
	case rule.Fault == Truncate:
		n := int64(0)
		errBreak := injected(List, prefix, rule.Err)
		err := s.inner.List(ctx, prefix, func(oi storage.ObjectInfo) error {
			if n >= rule.Offset {
				return errBreak
			}
			n++
			return fn(oi)
		})
		if err != nil {
			return err
		}
		if n < rule.Offset {
			return nil // the listing ended before the break point
		}
		return errBreak
	case rule.Fault == FailAfter:
		if err := s.inner.List(ctx, prefix, fn); err != nil {
			return err
		}
	}
	return injected(List, prefix, rule.Err)
}

// Delete applies the first matching rule, then calls the inner Delete.
func (s *Store) Delete(ctx context.Context, key string) error {
	rule := s.match(Delete, key)
	if rule == nil || rule.Fault == Corrupt {
		return s.inner.Delete(ctx, key)
	}
	if rule.Fault == Hang || rule.Fault == Stall {
		return hang(ctx, Delete, key)
	}
	if rule.Fault == FailAfter {
		if err := s.inner.Delete(ctx, key); err != nil {
			return err
		}
	}
	return injected(Delete, key, rule.Err)
}

// MaxBatch is the inner store's (see storage.BatchDeleter).
func (s *Store) MaxBatch() int { return storage.MaxBatch(s.inner) }

// DeleteBatch offers each key to the rules as a Delete of its own, in order. The
// keys before the first one a rule fires on go to the inner store's DeleteBatch; then
// the fault takes effect as for Delete (FailAfter deletes that key too), and the keys
// after it are left alone (and named in the *storage.BatchError with the faulted
// one). Without a fault the whole batch goes to the inner store.
func (s *Store) DeleteBatch(ctx context.Context, keys []string) error {
	b, ok := s.inner.(storage.BatchDeleter)
	if !ok || b.MaxBatch() == 0 {
		return storage.DeleteAll(ctx, s, keys)
	}
	for i, k := range keys {
		rule := s.match(Delete, k)
		if rule == nil || rule.Fault == Corrupt {
			continue
		}
		done := keys[:i]
		if rule.Fault == FailAfter {
			done = keys[:i+1]
		}
		if len(done) > 0 {
			if err := b.DeleteBatch(ctx, done); err != nil {
				return err
			}
		}
		if rule.Fault == Hang || rule.Fault == Stall {
			return hang(ctx, Delete, k)
		}
		failed := map[string]error{}
		for _, later := range keys[i+1:] {
			failed[later] = fmt.Errorf("faulty: delete %q: not sent, after the fault on %q", later, k)
		}
		if rule.Fault != FailAfter {
			failed[k] = injected(Delete, k, rule.Err)
		} else if len(failed) == 0 {
			return injected(Delete, k, rule.Err) // everything is deleted: a lost acknowledgement
		}
		return storage.NewBatchError("faulty: delete batch", keys, failed)
	}
	return b.DeleteBatch(ctx, keys)
}

// String names the inner store.
func (s *Store) String() string { return "faulty:" + s.inner.String() }

// Close closes the inner store.
func (s *Store) Close() error { return s.inner.Close() }

type readCloser struct {
	io.Reader
	io.Closer
}

// breakingReader yields left bytes of r, then fails with err.
type breakingReader struct {
	r    io.Reader
	left int64
	err  error
}

func (b *breakingReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// stallingReader yields left bytes of r, then blocks until ctx is done.
type stallingReader struct {
	ctx  context.Context
	r    io.Reader
	left int64
	key  string
}

func (s *stallingReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, hang(s.ctx, Get, s.key)
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	return n, err
}

// corruptingReader flips the byte at offset at of r.
type corruptingReader struct {
	r   io.Reader
	at  int64
	pos int64
}

func (c *corruptingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.at >= c.pos && c.at < c.pos+int64(n) {
		p[c.at-c.pos] ^= 0xff
	}
	c.pos += int64(n)
	return n, err
}
