//! The runtimes of the ablation (`--runtime`) and what the agents need from them: spawn a task,
//! sleep until an instant, give up on a future after a while, and open a TCP connection for
//! hyper's client (`--client hyper`).
//!
//! | `--runtime`   | what runs the agents                                                      |
//! | ------------- | ------------------------------------------------------------------------- |
//! | `tokio`       | `#[tokio::main]`'s default: multi-threaded, one worker per core           |
//! | `tokio-local` | a current-thread runtime and a `LocalSet`; agents `spawn_local`ed on it   |
//! | `smol`        | smol's global executor with one thread per core (`SMOL_THREADS`)          |
//! | `async-std`   | async-std's global executor (one thread per core, its default)            |
//!
//! reqwest needs a tokio runtime. On smol and async-std it runs through a bridge: async-std's
//! `tokio1` feature enters a tokio multi-threaded runtime on every async-std thread, and on smol
//! each agent's future enters one (what async-compat does) each time it is polled; in both,
//! hyper's connection tasks (the socket reads) run on tokio's workers, the agents on the
//! runtime under test. hyper's own client connection (`--client hyper`) runs natively on every
//! runtime: its socket is the runtime's own (tokio's `TcpStream`, async-io's `Async` on smol,
//! async-std's `TcpStream`), its connection task is spawned there.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Runtime {
    Tokio,
    TokioLocal,
    Smol,
    AsyncStd,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Client {
    Reqwest,
    Hyper,
}

impl Runtime {
    pub fn parse(s: &str) -> Option<Runtime> {
        Some(match s {
            "tokio" => Runtime::Tokio,
            "tokio-local" => Runtime::TokioLocal,
            "smol" => Runtime::Smol,
            "async-std" => Runtime::AsyncStd,
            _ => return None,
        })
    }

    /// The client a developer would pick on this runtime: reqwest on tokio, hyper's client
    /// connection (no tokio needed) on smol and async-std.
    pub fn native_client(self) -> Client {
        match self {
            Runtime::Tokio | Runtime::TokioLocal => Client::Reqwest,
            Runtime::Smol | Runtime::AsyncStd => Client::Hyper,
        }
    }

    /// The records header's `env.runtime`.
    pub fn describe(self, cores: usize, client: Client) -> String {
        let bridge = client == Client::Reqwest;
        match self {
            Runtime::Tokio => format!("tokio multi_thread, {cores} workers"),
            Runtime::TokioLocal => "tokio current_thread + LocalSet (spawn_local), 1 thread".into(),
            Runtime::Smol => format!(
                "smol global executor, {} threads (SMOL_THREADS){}",
                smol_threads(cores),
                if bridge {
                    "; reqwest through a tokio multi_thread runtime entered on every poll"
                } else {
                    ""
                }
            ),
            Runtime::AsyncStd => format!(
                "async-std global executor, {} threads{}",
                std::env::var("ASYNC_STD_THREAD_COUNT")
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .unwrap_or(cores),
                if bridge {
                    "; reqwest through async-std's tokio1 bridge (a tokio multi_thread runtime)"
                } else {
                    "; its tokio1 bridge's runtime is present but idle"
                }
            ),
        }
    }
}

impl Client {
    pub fn parse(s: &str) -> Option<Client> {
        Some(match s {
            "reqwest" => Client::Reqwest,
            "hyper" => Client::Hyper,
            _ => return None,
        })
    }
}

fn smol_threads(cores: usize) -> usize {
    std::env::var("SMOL_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cores)
}

/// Runs `main` to completion on the runtime; the future gets the runtime to spawn with.
pub fn block_on<F: Future<Output = ()> + 'static>(rt: Runtime, cores: usize, main: F) {
    match rt {
        Runtime::Tokio => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(main),
        Runtime::TokioLocal => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            tokio::task::LocalSet::new().block_on(&runtime, main)
        }
        Runtime::Smol => {
            // smol's global executor reads SMOL_THREADS once, when the first task is spawned;
            // its default is one thread, ours one per core as tokio's and async-std's are.
            if std::env::var_os("SMOL_THREADS").is_none() {
                std::env::set_var("SMOL_THREADS", cores.to_string());
            }
            smol::block_on(main)
        }
        Runtime::AsyncStd => async_std::task::block_on(main),
    }
}

/// A spawned task's result: the task's output, or why it did not finish.
pub type Join<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send>>;

pub fn spawn<T, F>(rt: Runtime, tokio_bridge: Option<&tokio::runtime::Handle>, fut: F) -> Join<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    match rt {
        Runtime::Tokio => {
            let h = tokio::spawn(fut);
            Box::pin(async move { h.await.map_err(|e| e.to_string()) })
        }
        Runtime::TokioLocal => {
            let h = tokio::task::spawn_local(fut);
            Box::pin(async move { h.await.map_err(|e| e.to_string()) })
        }
        Runtime::Smol => {
            let t = match tokio_bridge {
                Some(handle) => smol::spawn(EnterTokio {
                    handle: handle.clone(),
                    fut: Box::pin(fut),
                }),
                None => smol::spawn(Box::pin(fut) as Pin<Box<dyn Future<Output = T> + Send>>),
            };
            Box::pin(async move { Ok(t.await) })
        }
        Runtime::AsyncStd => {
            let h = async_std::task::spawn(fut);
            Box::pin(async move { Ok(h.await) })
        }
    }
}

/// A task nobody waits for (hyper's connection driver).
pub fn detach<F: Future<Output = ()> + Send + 'static>(rt: Runtime, fut: F) {
    match rt {
        Runtime::Tokio => drop(tokio::spawn(fut)),
        Runtime::TokioLocal => drop(tokio::task::spawn_local(fut)),
        Runtime::Smol => smol::spawn(fut).detach(),
        Runtime::AsyncStd => drop(async_std::task::spawn(fut)),
    }
}

/// A future polled inside a tokio runtime's context, so that tokio-based code (reqwest) finds
/// its reactor and timers while another runtime polls it.
struct EnterTokio<T> {
    handle: tokio::runtime::Handle,
    fut: Pin<Box<dyn Future<Output = T> + Send>>,
}

impl<T> Future for EnterTokio<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = &mut *self;
        let _guard = this.handle.enter();
        this.fut.as_mut().poll(cx)
    }
}

pub async fn sleep_until(rt: Runtime, at: Instant) {
    match rt {
        Runtime::Tokio | Runtime::TokioLocal => {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await
        }
        Runtime::Smol | Runtime::AsyncStd => {
            async_io::Timer::at(at).await;
        }
    }
}

/// The future's output, or None when `limit` passed first.
pub async fn timeout<F: Future>(rt: Runtime, limit: Duration, fut: F) -> Option<F::Output> {
    match rt {
        Runtime::Tokio | Runtime::TokioLocal => tokio::time::timeout(limit, fut).await.ok(),
        Runtime::Smol => {
            let fut = async { Some(fut.await) };
            let timer = async {
                async_io::Timer::after(limit).await;
                None
            };
            futures::pin_mut!(fut, timer);
            match futures::future::select(fut, timer).await {
                futures::future::Either::Left((v, _)) => v,
                futures::future::Either::Right((v, _)) => v,
            }
        }
        Runtime::AsyncStd => async_std::future::timeout(limit, fut).await.ok(),
    }
}

// ---------------------------------------------------------------------------------------------
// Sockets for hyper's client connection

/// What hyper's connection needs from a socket: tokio's I/O traits.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A futures-io socket (async-io, async-std) seen through tokio's I/O traits.
struct FuturesIo<T>(T);

impl<T: futures::io::AsyncRead + Unpin> tokio::io::AsyncRead for FuturesIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let slice = buf.initialize_unfilled();
        match Pin::new(&mut self.0).poll_read(cx, slice) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: futures::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FuturesIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// A TCP connection to `addr` ("host:port") on the runtime's own sockets, TCP_NODELAY on (as
/// reqwest, asyncio and chimeraforge set it).
pub async fn connect(rt: Runtime, addr: &str) -> std::io::Result<Box<dyn Io>> {
    Ok(match rt {
        Runtime::Tokio | Runtime::TokioLocal => {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Box::new(s)
        }
        Runtime::Smol => {
            let s = smol::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Box::new(FuturesIo(s))
        }
        Runtime::AsyncStd => {
            let s = async_std::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Box::new(FuturesIo(s))
        }
    })
}
