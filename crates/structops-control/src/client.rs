//! The client side: one method per [`Request`].

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::frame::{self, DEFAULT_MAX_FRAME, FrameError};
use crate::message::{
    BtfEntry, ControlError, Entries, JitedProg, LinkEntry, MapEntry, OpsTypeEntry, ProgEntry,
    Registered, Request, Response, RunOutput, StructOpsEntry, Target, XlatedProg,
};

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    /// The exchange failed (I/O, framing, decoding).
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// The server answered with an error.
    #[error("{0}")]
    Remote(#[from] ControlError),
    /// The server answered with a response of the wrong kind.
    #[error("unexpected response {0:?}")]
    Unexpected(Box<Response>),
}

impl ClientError {
    /// The errno of a server-side error.
    pub fn errno(&self) -> Option<structops::Errno> {
        match self {
            ClientError::Remote(e) => Some(e.errno()),
            _ => None,
        }
    }
}

/// A connection to a [`ControlServer`](crate::ControlServer).
#[derive(Debug)]
pub struct ControlClient {
    stream: UnixStream,
    limit: u32,
}

macro_rules! expect_response {
    ($resp:expr, $pat:pat => $out:expr) => {
        match $resp {
            $pat => Ok($out),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    };
}

impl ControlClient {
    /// Connects with a 30 s read and write timeout.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`].
    pub fn connect(path: impl AsRef<Path>) -> Result<ControlClient, ClientError> {
        let stream = UnixStream::connect(path).map_err(ClientError::Connect)?;
        let client = ControlClient {
            stream,
            limit: DEFAULT_MAX_FRAME,
        };
        client.set_timeout(Duration::from_secs(30))?;
        Ok(client)
    }

    /// Changes the read and write timeout.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`] if the socket refuses it.
    pub fn set_timeout(&self, t: Duration) -> Result<(), ClientError> {
        self.stream
            .set_read_timeout(Some(t))
            .and_then(|()| self.stream.set_write_timeout(Some(t)))
            .map_err(ClientError::Connect)
    }

    /// Sends one request and reads its response; an error response is
    /// [`ClientError::Remote`].
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        if let Err(e) = frame::write_message(&mut self.stream, req, self.limit) {
            // A server that refuses a connection (EPERM, EAGAIN) answers and closes
            // before reading: its answer may be waiting although our write failed.
            if let Ok(Response::Error(refusal)) =
                frame::read_message::<Response>(&mut self.stream, self.limit)
            {
                return Err(ClientError::Remote(refusal));
            }
            return Err(e.into());
        }
        match frame::read_message::<Response>(&mut self.stream, self.limit)? {
            Response::Error(e) => Err(ClientError::Remote(e)),
            r => Ok(r),
        }
    }

    /// [`Request::ListProgs`].
    pub fn list_progs(&mut self) -> Result<Vec<ProgEntry>, ClientError> {
        expect_response!(self.call(&Request::ListProgs)?, Response::Progs(v) => v)
    }

    /// [`Request::ListMaps`].
    pub fn list_maps(&mut self) -> Result<Vec<MapEntry>, ClientError> {
        expect_response!(self.call(&Request::ListMaps)?, Response::Maps(v) => v)
    }

    /// [`Request::ListLinks`].
    pub fn list_links(&mut self) -> Result<Vec<LinkEntry>, ClientError> {
        expect_response!(self.call(&Request::ListLinks)?, Response::Links(v) => v)
    }

    /// [`Request::ListStructOpsTypes`].
    pub fn list_struct_ops_types(&mut self) -> Result<Vec<OpsTypeEntry>, ClientError> {
        expect_response!(self.call(&Request::ListStructOpsTypes)?, Response::StructOpsTypes(v) => v)
    }

    /// [`Request::ListStructOps`].
    pub fn list_struct_ops(&mut self) -> Result<Vec<StructOpsEntry>, ClientError> {
        expect_response!(self.call(&Request::ListStructOps)?, Response::StructOps(v) => v)
    }

    /// [`Request::MapLookup`].
    pub fn map_lookup(&mut self, id: u32, key: &[u8]) -> Result<Vec<u8>, ClientError> {
        let req = Request::MapLookup {
            id,
            key: key.to_vec(),
        };
        expect_response!(self.call(&req)?, Response::Value(v) => v)
    }

    /// [`Request::MapUpdate`].
    pub fn map_update(
        &mut self,
        id: u32,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), ClientError> {
        let req = Request::MapUpdate {
            id,
            key: key.to_vec(),
            value: value.to_vec(),
            flags,
        };
        expect_response!(self.call(&req)?, Response::Done => ())
    }

    /// [`Request::MapDelete`].
    pub fn map_delete(&mut self, id: u32, key: &[u8]) -> Result<(), ClientError> {
        let req = Request::MapDelete {
            id,
            key: key.to_vec(),
        };
        expect_response!(self.call(&req)?, Response::Done => ())
    }

    /// [`Request::MapDump`].
    pub fn map_dump(&mut self, id: u32) -> Result<Entries, ClientError> {
        expect_response!(self.call(&Request::MapDump { id })?, Response::Entries(v) => v)
    }

    /// [`Request::StructOpsRegister`].
    pub fn struct_ops_register(
        &mut self,
        object: &[u8],
        path: &str,
        map: Option<&str>,
    ) -> Result<Vec<Registered>, ClientError> {
        let req = Request::StructOpsRegister {
            object: object.to_vec(),
            path: path.to_string(),
            map: map.map(str::to_string),
        };
        expect_response!(self.call(&req)?, Response::Registered(v) => v)
    }

    /// [`Request::StructOpsUnregister`].
    pub fn struct_ops_unregister(&mut self, target: Target) -> Result<(), ClientError> {
        let req = Request::StructOpsUnregister { target };
        expect_response!(self.call(&req)?, Response::Done => ())
    }

    /// [`Request::LinkUpdate`].
    pub fn link_update(
        &mut self,
        link_id: u32,
        object: &[u8],
        path: &str,
        map: Option<&str>,
    ) -> Result<Vec<Registered>, ClientError> {
        let req = Request::LinkUpdate {
            link_id,
            object: object.to_vec(),
            path: path.to_string(),
            map: map.map(str::to_string),
        };
        expect_response!(self.call(&req)?, Response::Registered(v) => v)
    }

    /// [`Request::LinkDetach`].
    pub fn link_detach(&mut self, link_id: u32) -> Result<(), ClientError> {
        expect_response!(self.call(&Request::LinkDetach { link_id })?, Response::Done => ())
    }

    /// [`Request::Status`], parsed.
    pub fn status(&mut self) -> Result<serde_json::Value, ClientError> {
        let text = expect_response!(self.call(&Request::Status)?, Response::Status(s) => s)?;
        serde_json::from_str(&text)
            .map_err(|_| ClientError::Unexpected(Box::new(Response::Status(text))))
    }

    /// [`Request::ProgXlated`].
    pub fn prog_xlated(&mut self, id: u32) -> Result<XlatedProg, ClientError> {
        expect_response!(self.call(&Request::ProgXlated { id })?, Response::Xlated(v) => v)
    }

    /// [`Request::ProgJited`].
    pub fn prog_jited(&mut self, id: u32) -> Result<JitedProg, ClientError> {
        expect_response!(self.call(&Request::ProgJited { id })?, Response::Jited(v) => v)
    }

    /// [`Request::ListBtf`].
    pub fn list_btf(&mut self) -> Result<Vec<BtfEntry>, ClientError> {
        expect_response!(self.call(&Request::ListBtf)?, Response::Btfs(v) => v)
    }

    /// [`Request::BtfGet`].
    pub fn btf_get(&mut self, id: u32) -> Result<Vec<u8>, ClientError> {
        expect_response!(self.call(&Request::BtfGet { id })?, Response::Btf(v) => v)
    }

    /// [`Request::ProgRun`]: test-runs program `id` in the host with struct_ops `args`,
    /// or a packet `data_in` and context `ctx_in`.
    pub fn prog_run(
        &mut self,
        id: u32,
        args: &[u64],
        data_in: Option<&[u8]>,
        ctx_in: Option<&[u8]>,
        repeat: u32,
    ) -> Result<RunOutput, ClientError> {
        let req = Request::ProgRun {
            id,
            args: args.to_vec(),
            data_in: data_in.map(<[u8]>::to_vec),
            ctx_in: ctx_in.map(<[u8]>::to_vec),
            repeat,
        };
        expect_response!(self.call(&req)?, Response::Ran(v) => v)
    }
}
