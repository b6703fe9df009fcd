// Package checkpoint keeps what an agent must not forget across restarts, kill -9 included, in
// one bbolt file: the tasks it runs, and the status updates the master has not acknowledged yet,
// in order for each task. A state change is written here before it is sent anywhere.
//
// Use:
//
//  1. Open(path) the file in the agent's data dir (it fails fast if another agent holds it).
//  2. SaveTask when a task is launched or changes; Tasks on restart to re-attach.
//  3. AddUpdate for every state change, before sending it; Head gives the update to send (or
//     resend) for a task; Ack removes it once the master acknowledged that very update, and a
//     duplicate or stale ack changes nothing.
//  4. RemoveTask once the task is terminal and all its updates are acknowledged.
//  5. SaveVolume, Volumes and RemoveVolume keep the agent's persistent volumes (agent/volumes's
//     records), which outlive every task.
package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/agora-sched/agora/pkg/api"
)

// ErrInUse: another process holds the checkpoint file.
var ErrInUse = errors.New("checkpoint: file is in use by another process")

// Update is one status update of one task, as it is sent to the master.
type Update = api.TaskStatus

var (
	bucketTasks   = []byte("tasks")
	bucketUpdates = []byte("updates") // one nested bucket per task; keys are big-endian sequence numbers
	bucketVolumes = []byte("volumes")
)

// Store is the checkpoint file.
type Store struct {
	db *bbolt.DB
}

// Open opens or creates the file at path.
func Open(path string) (*Store, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrInUse, path)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketTasks, bucketUpdates, bucketVolumes} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("checkpoint: init %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// SaveTask stores what the agent knows of a task (its launch request and latest state).
func (s *Store) SaveTask(id string, data []byte) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketTasks).Put([]byte(id), data)
	})
}

// Tasks returns every task saved, by id.
func (s *Store) Tasks() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketTasks).ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}

// RemoveTask forgets a task and any updates of it still pending.
func (s *Store) RemoveTask(id string) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketTasks).Delete([]byte(id)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUpdates).DeleteBucket([]byte(id)); err != nil && !errors.Is(err, bbolt.ErrBucketNotFound) {
			return err
		}
		return nil
	})
}

// AddUpdate appends an update to its task's queue, durably, before anyone sends it.
func (s *Store) AddUpdate(u Update) error { return s.SaveTaskAndUpdate(u, nil) }

// SaveTaskAndUpdate saves the task's record (unless task is nil) and appends the update to its
// queue in one transaction, so that a crash never keeps one without the other.
func (s *Store) SaveTaskAndUpdate(u Update, task []byte) error {
	if u.TaskID == "" || u.UUID == "" {
		return errors.New("checkpoint: an update needs a task id and a uuid")
	}
	data, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		if task != nil {
			if err := tx.Bucket(bucketTasks).Put([]byte(u.TaskID), task); err != nil {
				return err
			}
		}
		b, err := tx.Bucket(bucketUpdates).CreateBucketIfNotExists([]byte(u.TaskID))
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		var key [8]byte
		binary.BigEndian.PutUint64(key[:], seq)
		return b.Put(key[:], data)
	})
}

// Head returns the oldest unacknowledged update of a task: the one to send next.
func (s *Store) Head(taskID string) (Update, bool, error) {
	var u Update
	var ok bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketUpdates).Bucket([]byte(taskID))
		if b == nil {
			return nil
		}
		_, v := b.Cursor().First()
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &u)
	})
	return u, ok, err
}

// Pending returns every unacknowledged update, by task, oldest first.
func (s *Store) Pending() (map[string][]Update, error) {
	out := map[string][]Update{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketUpdates).ForEachBucket(func(id []byte) error {
			return tx.Bucket(bucketUpdates).Bucket(id).ForEach(func(_, v []byte) error {
				var u Update
				if err := json.Unmarshal(v, &u); err != nil {
					return err
				}
				out[string(id)] = append(out[string(id)], u)
				return nil
			})
		})
	})
	return out, err
}

// Ack removes the task's oldest update if it is the one with this uuid, and reports whether it
// was. An ack of an update already acknowledged, or not yet sent, changes nothing: updates are
// acknowledged in order, one at a time.
func (s *Store) Ack(taskID, uuid string) (bool, error) {
	var acked bool
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketUpdates).Bucket([]byte(taskID))
		if b == nil {
			return nil
		}
		k, v := b.Cursor().First()
		if v == nil {
			return nil
		}
		var u Update
		if err := json.Unmarshal(v, &u); err != nil {
			return err
		}
		if u.UUID != uuid {
			return nil
		}
		acked = true
		return b.Delete(k)
	})
	return acked, err
}

// SaveVolume stores what the agent knows of a persistent volume.
func (s *Store) SaveVolume(id string, data []byte) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketVolumes).Put([]byte(id), data)
	})
}

// Volumes returns every volume saved, by id.
func (s *Store) Volumes() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketVolumes).ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}

// RemoveVolume forgets a volume.
func (s *Store) RemoveVolume(id string) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketVolumes).Delete([]byte(id))
	})
}
