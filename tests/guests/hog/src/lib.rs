//! Test guest `hog`: a message whose value starts with `alloc` makes it allocate
//! 1 GiB and write into every page, far past the host's memory limit; the
//! failed allocation aborts the instance. If the host let it through, the
//! handler says so in a `bad-record` error. Any other message is saved.

use alerthost_guest::{Action, Handler, HandlerError, Message, Params};

/// Size of a WebAssembly page.
const PAGE: usize = 64 * 1024;

struct Hog;

impl Handler for Hog {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Hog)
    }

    fn handle(&mut self, msg: &Message) -> Result<Vec<Action>, HandlerError> {
        if msg.value.starts_with(b"alloc") {
            let mut big = vec![0u8; 1 << 30];
            big.iter_mut().step_by(PAGE).for_each(|byte| *byte = 1);
            let touched = std::hint::black_box(&big)
                .iter()
                .step_by(PAGE)
                .filter(|&&byte| byte == 1)
                .count();
            return Err(HandlerError::bad_record(format!(
                "allocated 1 GiB and touched {touched} pages"
            )));
        }
        Ok(vec![Action::save()])
    }
}

alerthost_guest::export_handler!(Hog);
