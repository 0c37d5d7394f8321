//! Moving data between the host and the device for `GpuBackend`: weights
//! and activations up (`Values`: f32, or a linear weight's halves two to a
//! word, split into row chunks no larger than one storage binding) and
//! results back (mapped asynchronously, as the browser requires).

use super::{Chunk, GpuBackend, GpuTensor};
use crate::error::{err, ErrorKind, Result};
use crate::reference::Stored;
use std::rc::Rc;

impl GpuBackend<'_> {
    /// `values` as `[rows, cols]` (matmul.wgsl's w_format for halves),
    /// split into row chunks no larger than one storage binding.
    pub(super) fn upload_as(
        &mut self,
        values: Values<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<GpuTensor> {
        if values.len() != rows * cols {
            return Err(err(
                ErrorKind::BadArgument,
                format!("{} values for a [{rows}, {cols}] matrix", values.len()),
            ));
        }
        let start = (self.clock)();
        let element_bytes: u64 = if values.stored() == Stored::F32 { 4 } else { 2 };
        let max_rows = (self.ctx.max_binding_bytes.get() / (cols.max(1) as u64 * element_bytes))
            .max(1) as usize;
        let mut chunks = Vec::new();
        let mut row_start = 0;
        while row_start < rows.max(1) {
            let n = max_rows
                .min(rows - row_start)
                .max(if rows == 0 { 0 } else { 1 });
            let bytes = values.bytes(row_start * cols..(row_start + n) * cols);
            let buffer = Self::raw_buffer(self.ctx, bytes.len() as u64);
            self.ctx.queue.write_buffer(&buffer.buffer, 0, &bytes);
            self.upload.bytes += bytes.len() as u64;
            chunks.push(Chunk {
                row_start,
                rows: n,
                buffer,
            });
            if rows == 0 {
                break;
            }
            row_start += n;
        }
        self.upload.ms += (self.clock)() - start;
        Ok(GpuTensor {
            rows,
            cols,
            chunks,
            stored: values.stored(),
        })
    }

    /// Read a tensor back. Native: blocks until the GPU is done; in the
    /// browser: resolves when the buffer is mapped.
    pub async fn read(&mut self, x: &GpuTensor) -> Result<Vec<f32>> {
        let bytes = (x.rows * x.cols * 4) as u64;
        let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let src = x.whole("read back")?.clone();
        self.encoder()
            .copy_buffer_to_buffer(&src, 0, &staging, 0, bytes);
        self.flush();
        self.ctx.take_errors()?;
        let slice = staging.slice(..);
        let (sender, receiver) = oneshot();
        slice.map_async(wgpu::MapMode::Read, move |result| sender.send(result));
        #[cfg(not(target_arch = "wasm32"))]
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| err(ErrorKind::Io, format!("the GPU did not finish: {e}")))?;
        receiver
            .await
            .map_err(|e| err(ErrorKind::Io, format!("cannot read the GPU's output: {e}")))?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| err(ErrorKind::Io, format!("cannot map the GPU's output: {e:?}")))?;
        let out = view
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        drop(view);
        staging.unmap();
        Ok(out)
    }
}

/// What goes up: f32 values, or halves (`Stored::F16` or `Bf16` bits).
pub(crate) enum Values<'a> {
    F32(&'a [f32]),
    Half(&'a [u16], Stored),
}

impl Values<'_> {
    fn len(&self) -> usize {
        match self {
            Values::F32(values) => values.len(),
            Values::Half(halves, _) => halves.len(),
        }
    }

    fn stored(&self) -> Stored {
        match self {
            Values::F32(_) => Stored::F32,
            Values::Half(_, stored) => *stored,
        }
    }

    /// Little-endian bytes of elements `range`: f32s, or halves two to a
    /// 4-byte word (element e in the low 16 bits of word e / 2 when e is
    /// even), padded to whole words.
    fn bytes(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        match self {
            Values::F32(values) => values[range].iter().flat_map(|v| v.to_le_bytes()).collect(),
            Values::Half(halves, _) => {
                let mut bytes: Vec<u8> =
                    halves[range].iter().flat_map(|h| h.to_le_bytes()).collect();
                if !bytes.len().is_multiple_of(4) {
                    bytes.extend_from_slice(&[0, 0]);
                }
                bytes
            }
        }
    }
}

/// A one-value channel whose receiver is a future: `map_async` calls back
/// from wgpu (natively during `poll`, in the browser from the event loop).
fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Rc::new(std::cell::RefCell::new((None, None)));
    (Sender(SendCell(shared.clone())), Receiver(shared))
}

type Shared<T> = Rc<std::cell::RefCell<(Option<T>, Option<std::task::Waker>)>>;

/// wgpu wants a `Send` callback natively; the callback runs on this thread
/// during `poll` (and on wasm there are no other threads), so the `Rc` never
/// crosses threads.
struct SendCell<T>(Shared<T>);
// SAFETY: see above: the value is only touched on the thread that polls.
unsafe impl<T> Send for SendCell<T> {}

struct Sender<T>(SendCell<T>);

impl<T> Sender<T> {
    fn send(self, value: T) {
        let mut state = self.0 .0.borrow_mut();
        state.0 = Some(value);
        if let Some(waker) = state.1.take() {
            waker.wake();
        }
    }
}

struct Receiver<T>(Shared<T>);

impl<T> std::future::Future for Receiver<T> {
    type Output = T;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        let mut state = self.0.borrow_mut();
        match state.0.take() {
            Some(value) => std::task::Poll::Ready(value),
            None => {
                state.1 = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}
