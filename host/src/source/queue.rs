//! A partition's own queue of messages, read in batches.
//!
//! rust-rdkafka's `PartitionQueue::poll` returns one message per call
//! through librdkafka's event API: per message it takes the queue's lock,
//! reads the clock four times (three in librdkafka, one in rust-rdkafka),
//! updates the application position, and wraps the message in an `Arc`.
//! A worker handling a million small messages a second spends about a
//! sixth of its time there. `rd_kafka_consume_batch_queue` takes up to a
//! batch of messages in one call (two clock reads and one position update
//! per batch), so the workers read their queues through it. This module is
//! the only unsafe Kafka code of the host. It does what rust-rdkafka's
//! `split_partition_queue` and `PartitionQueue` do, with two differences:
//! the batch call in place of the single poll, and wake-ups registered by
//! id so that closing a handle never silences a newer one (see `wakes`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_void};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// A wake-up, run when a queue turns from empty to non-empty.
type Wake = Arc<dyn Fn() + Send + Sync>;

/// The wake-ups of open queue handles, by the id librdkafka is given as the
/// callback's opaque value. Several handles of one partition's queue share
/// librdkafka's one callback slot (a partition revoked and assigned again
/// gets a new handle while its worker may still hold the old one), so a
/// handle is never left a pointer into memory it frees: closing a handle
/// forgets its id here and leaves the slot alone (clearing it would silence
/// a newer handle's wake-up), and a callback whose id is gone does nothing.
fn wakes() -> &'static Mutex<HashMap<u64, Wake>> {
    static WAKES: OnceLock<Mutex<HashMap<u64, Wake>>> = OnceLock::new();
    WAKES.get_or_init(Mutex::default)
}

fn lock_wakes() -> MutexGuard<'static, HashMap<u64, Wake>> {
    wakes().lock().unwrap_or_else(PoisonError::into_inner)
}

/// One partition's queue, split off the consumer's queue so that its
/// messages arrive here and nowhere else.
pub struct PartitionQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// The id of its wake-up in [`wakes`], once set.
    wake: Option<u64>,
    /// The client the queue belongs to, kept alive as long as the queue.
    _client: Arc<dyn Send + Sync>,
}

// SAFETY: librdkafka queues are thread safe (every operation takes the
// queue's lock); the rest is plain data.
unsafe impl Send for PartitionQueue {}
// SAFETY: as above; `poll` only reads through the queue's own lock.
unsafe impl Sync for PartitionQueue {}

impl std::fmt::Debug for PartitionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionQueue").finish_non_exhaustive()
    }
}

impl PartitionQueue {
    /// Split `topic`'s `partition` off `consumer`'s queue. `None` when the
    /// topic name holds a NUL or librdkafka does not know the partition.
    pub fn split<C: ConsumerContext + 'static>(
        consumer: &Arc<BaseConsumer<C>>,
        topic: &str,
        partition: i32,
    ) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is valid while `consumer` lives, and
        // `topic` is a NUL-terminated string that outlives the call.
        let queue = unsafe {
            rdsys::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            )
        };
        let queue = NonNull::new(queue)?;
        // SAFETY: `queue` is the valid queue just returned; forwarding to
        // NULL stops it being forwarded to the consumer's queue.
        unsafe { rdsys::rd_kafka_queue_forward(queue.as_ptr(), ptr::null_mut()) };
        Some(PartitionQueue {
            queue,
            wake: None,
            _client: Arc::clone(consumer) as Arc<dyn Send + Sync>,
        })
    }

    /// Run `wake` whenever the queue turns from empty to non-empty (on one
    /// of librdkafka's threads, with the queue locked: it must be quick and
    /// must not call librdkafka).
    pub fn set_nonempty_callback<F>(&mut self, wake: F)
    where
        F: Fn() + Send + Sync + 'static,
    {
        unsafe extern "C" fn nonempty(_: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
            // The opaque value is an id, not a pointer: nothing to free.
            let id = opaque as usize as u64;
            let wake = lock_wakes().get(&id).cloned();
            if let Some(wake) = wake {
                wake();
            }
        }
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        lock_wakes().insert(id, Arc::new(wake));
        // SAFETY: the queue is valid; the opaque value is an id that the
        // callback only looks up.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(
                self.queue.as_ptr(),
                Some(nonempty),
                id as usize as *mut c_void,
            );
        }
        if let Some(old) = self.wake.replace(id) {
            lock_wakes().remove(&old);
        }
    }

    /// Move up to `batch`'s capacity of messages from the queue into
    /// `batch`, without waiting; returns how many. `batch` must be empty.
    pub fn poll(&self, batch: &mut Batch) -> usize {
        debug_assert!(batch.is_empty());
        let capacity = batch.messages.capacity();
        // SAFETY: the array has room for `capacity` pointers; librdkafka
        // writes `n <= capacity` of them, each a message we now own.
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                0,
                batch.messages.as_mut_ptr(),
                capacity,
            )
        };
        let n = usize::try_from(n).unwrap_or(0).min(capacity);
        // SAFETY: librdkafka initialised the first `n` slots.
        unsafe { batch.messages.set_len(n) };
        batch.next = 0;
        n
    }
}

impl Drop for PartitionQueue {
    fn drop(&mut self) {
        // The callback slot is left as it is (see `wakes`): it may be a
        // newer handle's by now.
        if let Some(id) = self.wake.take() {
            lock_wakes().remove(&id);
        }
        // SAFETY: the queue handle is valid until destroyed here.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// Messages taken from a queue, handed out one at a time in order; those
/// not taken are destroyed with the batch (or at the next `clear`).
pub struct Batch {
    messages: Vec<*mut rdsys::rd_kafka_message_t>,
    next: usize,
}

// SAFETY: the messages are owned by the batch alone; librdkafka messages
// may be read and destroyed on any thread.
unsafe impl Send for Batch {}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("messages", &self.messages.len())
            .field("next", &self.next)
            .finish()
    }
}

impl Batch {
    /// A batch of at most `size` messages.
    pub fn new(size: usize) -> Self {
        Batch {
            messages: Vec::with_capacity(size.max(1)),
            next: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The next message of the batch, if any; it stays valid until the
    /// next call, or `clear`.
    pub fn next_message(&mut self) -> Option<RawMessage<'_>> {
        if self.next > 0 {
            // SAFETY: handed out by the previous call, not yet destroyed.
            unsafe { rdsys::rd_kafka_message_destroy(self.messages[self.next - 1]) };
            self.messages[self.next - 1] = ptr::null_mut();
        }
        let message = *self.messages.get(self.next)?;
        self.next += 1;
        if let Some(&ahead) = self.messages.get(self.next + 1) {
            prefetch(ahead.cast(), size_of::<rdsys::rd_kafka_message_t>());
        }
        if let Some(&following) = self.messages.get(self.next) {
            // SAFETY: a valid message owned by the batch (its struct was
            // prefetched a message ago).
            let following = unsafe { &*following };
            // The start of the value, and the header block that follows it.
            let value: *const u8 = following.payload.cast();
            prefetch(value, following.len);
            prefetch(value.wrapping_add(following.len), 1);
        }
        // SAFETY: a valid message owned by the batch, destroyed only after
        // the borrow of `self` this view holds ends.
        Some(RawMessage {
            message: unsafe { &*message },
        })
    }

    /// Destroy every message not yet destroyed.
    pub fn clear(&mut self) {
        for message in self.messages.drain(..) {
            if !message.is_null() {
                // SAFETY: owned by the batch and not destroyed yet.
                unsafe { rdsys::rd_kafka_message_destroy(message) };
            }
        }
        self.next = 0;
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Cache lines a prefetch asks for at most (1 KiB): the hardware prefetcher
/// follows a longer copy on its own, and more hints cost more than they
/// save for 5 KiB messages.
const PREFETCH_LINES: usize = 16;

/// Ask the CPU to load the `len` bytes at `data` into its caches, so that
/// the next message is in cache by the time it is handled: the broker
/// thread wrote it on another core, and its first touch otherwise stalls
/// the worker (a sixth of a worker's time for 1 KiB messages). A hint
/// only: no memory is read, so any address is allowed.
fn prefetch(data: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        if data.is_null() {
            return;
        }
        let lines = len.div_ceil(64).min(PREFETCH_LINES);
        for line in 0..lines {
            // SAFETY: a prefetch never faults, whatever the address
            // (`wrapping_add` keeps the pointer arithmetic defined).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(data.wrapping_add(line * 64).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, len);
}

/// A message of a [`Batch`].
pub struct RawMessage<'a> {
    message: &'a rdsys::rd_kafka_message_t,
}

/// A message's timestamp, as librdkafka gives it.
pub use rdkafka::Timestamp;

impl std::fmt::Debug for RawMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMessage")
            .field("partition", &self.partition())
            .field("offset", &self.offset())
            .finish_non_exhaustive()
    }
}

impl<'a> RawMessage<'a> {
    /// The consumer error this message carries instead of data (end of
    /// partition included), if any.
    pub fn error(&self) -> Option<KafkaError> {
        let code = self.message.err;
        if code == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        Some(
            if code == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF {
                KafkaError::PartitionEOF(self.message.partition)
            } else {
                KafkaError::MessageConsumption(RDKafkaErrorCode::from(code))
            },
        )
    }

    pub fn partition(&self) -> i32 {
        self.message.partition
    }

    pub fn offset(&self) -> i64 {
        self.message.offset
    }

    pub fn payload(&self) -> Option<&'a [u8]> {
        bytes(self.message.payload, self.message.len)
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        bytes(self.message.key, self.message.key_len)
    }

    pub fn timestamp(&self) -> Timestamp {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a valid message; `kind` is written before the return.
        let millis = unsafe { rdsys::rd_kafka_message_timestamp(self.message, &mut kind) };
        if millis == -1 {
            return Timestamp::NotAvailable;
        }
        match kind {
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => {
                Timestamp::CreateTime(millis)
            }
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => {
                Timestamp::LogAppendTime(millis)
            }
            _ => Timestamp::NotAvailable,
        }
    }

    /// Push every header's name and value onto `out`, in order (nothing
    /// is allocated for a message without headers). A name that is not
    /// UTF-8 has its invalid bytes replaced.
    pub fn headers(&self, out: &mut Vec<(Cow<'a, str>, Option<&'a [u8]>)>) {
        let mut headers = ptr::null_mut();
        // SAFETY: a valid consumed message; `headers` is written on success
        // and lives as long as the message.
        let found = unsafe {
            rdsys::rd_kafka_message_headers(self.message, &mut headers)
                == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        };
        if !found || headers.is_null() {
            return;
        }
        // SAFETY: `headers` is the message's valid header list.
        let count = unsafe { rdsys::rd_kafka_header_cnt(headers) };
        out.reserve(count);
        for index in 0..count {
            let mut name = ptr::null();
            let mut value = ptr::null();
            let mut size = 0;
            // SAFETY: `index < count`; the out-pointers are written on
            // success and point into the header list.
            let ok = unsafe {
                rdsys::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size)
                    == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            };
            if !ok || name.is_null() {
                continue;
            }
            // SAFETY: header names are NUL-terminated strings of the list,
            // which lives as long as the message.
            let name: &'a CStr = unsafe { CStr::from_ptr(name) };
            out.push((name.to_string_lossy(), bytes(value, size)));
        }
    }
}

/// The bytes at `data`, `None` for a null pointer.
fn bytes<'a>(data: *const c_void, len: usize) -> Option<&'a [u8]> {
    if data.is_null() {
        None
    } else {
        // SAFETY: librdkafka's (pointer, length) pairs of a message stay
        // valid while the message lives, which outlasts `'a`.
        Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;
    use std::time::Duration;

    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use super::*;

    /// A partition revoked and assigned again gets a new queue handle while
    /// the old one may still be open (its worker drops it at its next
    /// batch): closing the old handle must not silence the new handle's
    /// wake-up, or the partition is read only at the pool's sweeps.
    #[test]
    fn closing_an_older_handle_keeps_the_newer_handles_wake_up() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 1, 1).unwrap();
        let servers = cluster.bootstrap_servers();
        let consumer: Arc<BaseConsumer> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .set("group.id", "queue-test")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap(),
        );
        let (woken, wakes) = channel();
        let mut old = PartitionQueue::split(&consumer, "t", 0).unwrap();
        old.set_nonempty_callback(|| {});
        let mut new = PartitionQueue::split(&consumer, "t", 0).unwrap();
        new.set_nonempty_callback(move || {
            let _ = woken.send(());
        });
        drop(old);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Beginning).unwrap();
        consumer.assign(&tpl).unwrap();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .create()
            .unwrap();
        producer
            .send(BaseRecord::<(), _>::to("t").partition(0).payload("m"))
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
        // The consumer's own events are served by polling it.
        let mut woke = false;
        for _ in 0..100 {
            let _ = consumer.poll(Duration::from_millis(100));
            if wakes.try_recv().is_ok() {
                woke = true;
                break;
            }
        }
        assert!(woke, "the newer handle was never woken");
        // The wake-up may come for an op before the message itself.
        let mut batch = Batch::new(8);
        let mut payloads = Vec::new();
        for _ in 0..100 {
            if new.poll(&mut batch) > 0 {
                while let Some(message) = batch.next_message() {
                    payloads.extend(message.payload().map(<[u8]>::to_vec));
                }
                batch.clear();
            }
            if !payloads.is_empty() {
                break;
            }
            let _ = consumer.poll(Duration::from_millis(100));
        }
        assert_eq!(payloads, [b"m".to_vec()]);
    }
}
