//! The request handler: runs each [`Request`] against a runtime. The server puts it behind
//! a socket; the CLI runs it in-process for commands on an object file, so both print
//! the same thing.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};

use structops::loader::{LoadOptions, LoadedObject, ObjectLoader, StructOpsLink};
use structops::{Errno, ObjKind, RunMode, Runtime, TestRun};

use crate::frame::DEFAULT_MAX_FRAME;
use crate::message::{
    BtfEntry, ControlError, JitedProg, LinkEntry, MAX_REMOTE_REPEAT, MapEntry, OpsTypeEntry,
    ProgEntry, Registered, Request, Response, RunOutput, Step, StructOpsEntry, Target, XlatedProg,
};
use crate::server::StatusHook;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent, so a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs requests against a runtime and owns what they register: struct_ops objects
/// registered through it stay loaded until they are unregistered or the controller is
/// dropped (which detaches them).
pub struct Controller {
    rt: Arc<Runtime>,
    status: Option<StatusHook>,
    max_reply: u32,
    regs: Mutex<Vec<Registration>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("registrations", &lock(&self.regs).len())
            .field("status", &self.status.is_some())
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller for `rt`, with an optional status hook; replies are kept under the
    /// default frame limit.
    pub fn new(rt: Arc<Runtime>, status: Option<StatusHook>) -> Controller {
        Controller::with_reply_limit(rt, status, DEFAULT_MAX_FRAME)
    }

    /// [`Controller::new`] with replies (map dumps, BTF, code) limited to `max_reply`
    /// bytes; larger ones are `E2BIG`.
    pub fn with_reply_limit(
        rt: Arc<Runtime>,
        status: Option<StatusHook>,
        max_reply: u32,
    ) -> Controller {
        Controller {
            rt,
            status,
            max_reply,
            regs: Mutex::new(Vec::new()),
        }
    }

    /// The runtime requests run against.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// Runs one request. A failure is [`Response::Error`]; a panic in a handler is
    /// caught and answered with `EFAULT` at [`Step::Internal`].
    pub fn handle(&self, req: Request) -> Response {
        catch_unwind(AssertUnwindSafe(|| dispatch(self, req)))
            .unwrap_or_else(|_| {
                Err(ControlError::new(
                    Errno::EFAULT,
                    Step::Internal,
                    "request handler panicked",
                ))
            })
            .unwrap_or_else(Response::Error)
    }

    /// Struct_ops objects registered through this controller and still registered.
    pub fn registrations(&self) -> usize {
        lock(&self.regs).len()
    }
}

impl Controller {
    /// Detaches everything registered through this controller and releases the objects.
    pub fn detach_all(&self) {
        let mut regs = lock(&self.regs);
        for reg in regs.drain(..) {
            for (_, link) in &reg.links {
                let _ = link.detach(&self.rt);
            }
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// One struct_ops object loaded through the socket, kept alive while any of its maps
/// stays registered.
struct Registration {
    #[expect(
        dead_code,
        reason = "held so the programs and maps outlive the registration"
    )]
    obj: LoadedObject,
    links: Vec<(String, StructOpsLink)>,
}

type Reply = Result<Response, ControlError>;

fn err(step: Step, message: impl Into<String>) -> impl Fn(Errno) -> ControlError {
    let message = message.into();
    move |e| ControlError::new(e, step, message.clone())
}

/// Every live id of `kind`, in order.
fn ids(rt: &Runtime, kind: ObjKind) -> Result<Vec<u32>, ControlError> {
    let mut out = Vec::new();
    let mut id = 0;
    loop {
        match rt.get_next_id(kind, id) {
            Ok(next) => {
                out.push(next);
                id = next;
            }
            Err(Errno::ENOENT) => return Ok(out),
            Err(e) => {
                return Err(ControlError::new(
                    e,
                    Step::Lookup,
                    format!("get_next_id({kind:?})"),
                ));
            }
        }
    }
}

fn dispatch(ctl: &Controller, req: Request) -> Reply {
    let rt = &*ctl.rt;
    match req {
        Request::ListProgs => {
            let mut out = Vec::new();
            for id in ids(rt, ObjKind::Prog)? {
                // An object freed between get_next_id and get_fd_by_id is skipped.
                let Ok(p) = rt.prog_get_fd_by_id(id) else {
                    continue;
                };
                let i = p.info();
                out.push(ProgEntry {
                    id: i.id,
                    prog_type: i.prog_type,
                    name: i.name,
                    tag: i.tag,
                    gpl_compatible: i.gpl_compatible,
                    load_time: i.load_time,
                    xlated_len: i.xlated_prog_len,
                    jited_len: i.jited_prog_len,
                    map_ids: i.map_ids,
                    btf_id: i.btf_id,
                });
            }
            Ok(Response::Progs(out))
        }
        Request::ListMaps => {
            let mut out = Vec::new();
            for id in ids(rt, ObjKind::Map)? {
                let Ok(m) = rt.map_get_fd_by_id(id, 0) else {
                    continue;
                };
                out.push(map_entry(&m));
            }
            Ok(Response::Maps(out))
        }
        Request::ListLinks => {
            let mut out = Vec::new();
            for id in ids(rt, ObjKind::Link)? {
                let Ok(l) = rt.link_get_fd_by_id(id) else {
                    continue;
                };
                let i = l.info();
                out.push(LinkEntry {
                    id: i.id,
                    link_type: i.link_type,
                    prog_id: i.prog_id,
                    map_id: i.map_id,
                });
            }
            Ok(Response::Links(out))
        }
        Request::ListStructOpsTypes => Ok(Response::StructOpsTypes(
            rt.struct_ops_types()
                .iter()
                .map(|t| OpsTypeEntry {
                    name: t.name().to_string(),
                    size: t.size(),
                    value_size: t.value_size(),
                    members: t.members().iter().map(|m| m.name.to_string()).collect(),
                })
                .collect(),
        )),
        Request::ListStructOps => {
            let mut out = Vec::new();
            for id in ids(rt, ObjKind::Map)? {
                let Ok(m) = rt.map_get_fd_by_id(id, 0) else {
                    continue;
                };
                let Some(st) = m.struct_ops() else { continue };
                out.push(StructOpsEntry {
                    map_id: id,
                    name: m.info().name,
                    ops_type: st.ops_type().name().to_string(),
                    state: st.state() as u32,
                    link_map: st.is_link_map(),
                    value: st.seq_show(),
                });
            }
            Ok(Response::StructOps(out))
        }
        Request::MapLookup { id, key } => {
            let m = rt
                .map_get_fd_by_id(id, 0)
                .map_err(err(Step::Lookup, format!("map {id}")))?;
            let mut v = vec![0u8; m.sys_value_size()];
            rt.map_lookup_elem(&m, Some(&key), &mut v, 0)
                .map_err(err(Step::Map, "lookup"))?;
            Ok(Response::Value(v))
        }
        Request::MapUpdate {
            id,
            key,
            value,
            flags,
        } => {
            let m = rt
                .map_get_fd_by_id(id, 0)
                .map_err(err(Step::Lookup, format!("map {id}")))?;
            rt.map_update_elem(&m, Some(&key), &value, flags)
                .map_err(err(Step::Map, "update"))?;
            Ok(Response::Done)
        }
        Request::MapDelete { id, key } => {
            let m = rt
                .map_get_fd_by_id(id, 0)
                .map_err(err(Step::Lookup, format!("map {id}")))?;
            rt.map_delete_elem(&m, Some(&key))
                .map_err(err(Step::Map, "delete"))?;
            Ok(Response::Done)
        }
        Request::MapDump { id } => map_dump(ctl, id),
        Request::StructOpsRegister { object, path, map } => {
            register(ctl, &object, &path, map.as_deref())
        }
        Request::StructOpsUnregister { target } => unregister(ctl, &target),
        Request::LinkUpdate {
            link_id,
            object,
            path,
            map,
        } => link_update(ctl, link_id, &object, &path, map.as_deref()),
        Request::LinkDetach { link_id } => {
            let l = rt
                .link_get_fd_by_id(link_id)
                .map_err(err(Step::Lookup, format!("link {link_id}")))?;
            rt.link_detach(&l)
                .map_err(err(Step::LinkDetach, format!("link {link_id}")))?;
            // Drop our own reference to it, if the socket created it.
            let mut regs = lock(&ctl.regs);
            for reg in regs.iter_mut() {
                reg.links
                    .retain(|(_, sl)| !matches!(sl, StructOpsLink::Link(h) if h.id() == link_id));
            }
            regs.retain(|r| !r.links.is_empty());
            Ok(Response::Done)
        }
        Request::ProgXlated { id } => {
            let p = rt
                .prog_get_fd_by_id(id)
                .map_err(err(Step::Lookup, format!("prog {id}")))?;
            let host = rt.host_btf();
            let kfuncs = p
                .kfuncs()
                .iter()
                .filter_map(|&k| {
                    let btf = host.as_ref()?;
                    let name = btf.btf().type_name(k).ok()?;
                    Some((k, name.to_string()))
                })
                .collect();
            let insns: Vec<[u8; 8]> = p.xlated_insns_dump().iter().map(|i| i.to_bytes()).collect();
            budget(ctl, insns.len() * 8, "xlated instructions")?;
            Ok(Response::Xlated(XlatedProg {
                name: p.name().to_string(),
                tag: p.tag(),
                insns,
                kfuncs,
            }))
        }
        Request::ProgJited { id } => {
            let p = rt
                .prog_get_fd_by_id(id)
                .map_err(err(Step::Lookup, format!("prog {id}")))?;
            let Some(jit) = p.jited() else {
                return Err(ControlError::new(
                    Errno::EOPNOTSUPP,
                    Step::Prog,
                    format!("prog {id} runs on the interpreter: it has no native code"),
                ));
            };
            let code = jit.machine_code().to_vec();
            budget(ctl, code.len(), "native code")?;
            let functions = jit
                .functions()
                .iter()
                .map(|&(insn, start, size)| {
                    (
                        insn,
                        u32::try_from(start).unwrap_or(u32::MAX),
                        u32::try_from(size).unwrap_or(u32::MAX),
                    )
                })
                .collect();
            Ok(Response::Jited(JitedProg {
                name: p.name().to_string(),
                tag: p.tag(),
                code,
                functions,
            }))
        }
        Request::ListBtf => {
            let mut out = Vec::new();
            for id in ids(rt, ObjKind::Btf)? {
                let Ok(b) = rt.btf_get_fd_by_id(id) else {
                    continue;
                };
                let i = b.info();
                out.push(BtfEntry {
                    id: i.id,
                    name: i.name,
                    size: i.btf_size,
                    kernel: i.kernel_btf,
                });
            }
            Ok(Response::Btfs(out))
        }
        Request::BtfGet { id } => {
            let b = rt
                .btf_get_fd_by_id(id)
                .map_err(err(Step::Lookup, format!("btf {id}")))?;
            budget(ctl, b.raw().len(), "BTF")?;
            Ok(Response::Btf(b.raw().to_vec()))
        }
        Request::ProgRun {
            id,
            args,
            data_in,
            ctx_in,
            repeat,
        } => {
            let p = rt
                .prog_get_fd_by_id(id)
                .map_err(err(Step::Lookup, format!("prog {id}")))?;
            if repeat > MAX_REMOTE_REPEAT {
                return Err(ControlError::new(
                    Errno::E2BIG,
                    Step::Run,
                    format!("repeat {repeat} is over the limit of {MAX_REMOTE_REPEAT}"),
                ));
            }
            let mut t = if !args.is_empty() {
                TestRun::with_args(&args)
            } else if let Some(c) = &ctx_in {
                TestRun::with_ctx(c)
            } else {
                TestRun::default()
            };
            if let Some(d) = data_in {
                t.data_in = d;
                t.data_out = Some(Vec::new());
            }
            t.repeat = repeat;
            t.mode = RunMode::Auto;
            rt.prog_test_run(&p, &mut t).map_err(|e| {
                let why = t
                    .fault
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                ControlError::new(
                    e,
                    Step::Run,
                    format!(
                        "prog {id}{}",
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(": {why}")
                        }
                    ),
                )
            })?;
            let out = RunOutput {
                retval: t.retval,
                duration_ns: t.duration,
                data_out: t.data_out,
                ctx_out: t.ctx_out,
            };
            budget(
                ctl,
                out.data_out.as_ref().map_or(0, Vec::len)
                    + out.ctx_out.as_ref().map_or(0, Vec::len),
                "test run output",
            )?;
            Ok(Response::Ran(out))
        }
        Request::Status => {
            let hook = ctl.status.as_ref().ok_or(ControlError::new(
                Errno::EOPNOTSUPP,
                Step::Status,
                "the host has no status hook",
            ))?;
            let v = hook();
            serde_json::to_string(&v)
                .map(Response::Status)
                .map_err(|e| ControlError::new(Errno::EINVAL, Step::Status, e.to_string()))
        }
    }
}

/// `E2BIG` when a reply of `len` bytes would not fit in a frame.
fn budget(ctl: &Controller, len: usize, what: &str) -> Result<(), ControlError> {
    // Room for the enum tags and length prefixes around the bytes.
    if len.saturating_add(4096) > ctl.max_reply as usize {
        return Err(ControlError::new(
            Errno::E2BIG,
            Step::Frame,
            format!(
                "{what}: {len} bytes, over the reply limit of {}",
                ctl.max_reply
            ),
        ));
    }
    Ok(())
}

fn map_entry(m: &structops::MapHandle) -> MapEntry {
    let i = m.info();
    MapEntry {
        id: i.id,
        map_type: i.map_type,
        name: i.name,
        key_size: i.key_size,
        value_size: i.value_size,
        sys_value_size: u32::try_from(m.sys_value_size()).unwrap_or(u32::MAX),
        max_entries: i.max_entries,
        map_flags: i.map_flags,
        btf_id: i.btf_id,
        btf_key_type_id: i.btf_key_type_id,
        btf_value_type_id: i.btf_value_type_id,
        btf_vmlinux_value_type_id: i.btf_vmlinux_value_type_id,
    }
}

fn map_dump(ctl: &Controller, id: u32) -> Reply {
    let rt = &*ctl.rt;
    let m = rt
        .map_get_fd_by_id(id, 0)
        .map_err(err(Step::Lookup, format!("map {id}")))?;
    let info = m.info();
    let vsize = m.sys_value_size();
    let budget = ctl.max_reply as usize;
    let mut used = 0usize;
    let mut out = Vec::new();
    let mut key: Option<Vec<u8>> = None;
    let mut next = vec![0u8; info.key_size as usize];
    // get_next_key can cycle back to the first key when the previous one was deleted
    // concurrently; max_entries bounds the walk.
    for _ in 0..=info.max_entries {
        match rt.map_get_next_key(&m, key.as_deref(), &mut next) {
            Ok(()) => {}
            Err(Errno::ENOENT) => break,
            Err(e) => return Err(ControlError::new(e, Step::Map, "get_next_key")),
        }
        let mut v = vec![0u8; vsize];
        match rt.map_lookup_elem(&m, Some(&next), &mut v, 0) {
            Ok(()) => {
                used += next.len() + v.len() + 8;
                if used > budget {
                    return Err(ControlError::new(
                        Errno::E2BIG,
                        Step::Map,
                        "dump over the frame limit",
                    ));
                }
                out.push((next.clone(), v));
            }
            // Deleted in between: skip it, as bpftool does.
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(ControlError::new(e, Step::Map, "lookup")),
        }
        key = Some(next.clone());
    }
    Ok(Response::Entries(out))
}

fn load(rt: &Runtime, bytes: &[u8], path: &str) -> Result<LoadedObject, ControlError> {
    let loader = ObjectLoader::open(bytes, path)
        .map_err(|e| ControlError::new(e.errno(), Step::Open, e.to_string()))?;
    // Log level 1 so that a refused program's error names the verifier's reason.
    let opts = LoadOptions {
        log_level: 1,
        ..LoadOptions::default()
    };
    loader
        .load(rt, &opts)
        .map_err(|e| ControlError::new(e.errno(), Step::Load, e.to_string()))
}

fn struct_ops_maps(obj: &LoadedObject) -> Vec<String> {
    obj.object()
        .maps()
        .iter()
        .filter(|m| m.struct_ops().is_some())
        .map(|m| m.name().to_string())
        .collect()
}

fn registered(name: &str, link: &StructOpsLink) -> Registered {
    match link {
        StructOpsLink::Map(m) => Registered {
            name: name.to_string(),
            map_id: m.id(),
            link_id: None,
        },
        StructOpsLink::Link(l) => Registered {
            name: name.to_string(),
            map_id: l.info().map_id,
            link_id: Some(l.id()),
        },
    }
}

/// Loads the object and attaches every struct_ops map (or `only`), like
/// `TcpHost::attach_all`; on a failure the maps already attached are detached again,
/// so a registration is all or nothing.
fn register(ctl: &Controller, bytes: &[u8], path: &str, only: Option<&str>) -> Reply {
    let rt = &*ctl.rt;
    let obj = load(rt, bytes, path)?;
    let mut names = struct_ops_maps(&obj);
    if let Some(only) = only {
        names.retain(|n| n == only);
    }
    if names.is_empty() {
        return Err(ControlError::new(
            Errno::ENOENT,
            Step::Attach,
            format!(
                "{path}: no struct_ops map{}",
                only.map(|m| format!(" {m}")).unwrap_or_default()
            ),
        ));
    }
    let mut links: Vec<(String, StructOpsLink)> = Vec::new();
    for name in names {
        match obj.attach_struct_ops(rt, &name) {
            Ok(l) => links.push((name, l)),
            Err(e) => {
                for (_, l) in &links {
                    let _ = l.detach(rt);
                }
                return Err(ControlError::new(e.errno(), Step::Attach, e.to_string()));
            }
        }
    }
    let out = links.iter().map(|(n, l)| registered(n, l)).collect();
    log::info!("control socket: registered {path}");
    lock(&ctl.regs).push(Registration { obj, links });
    Ok(Response::Registered(out))
}

fn unregister(ctl: &Controller, target: &Target) -> Reply {
    let rt = &*ctl.rt;
    let mut regs = lock(&ctl.regs);
    let hit = |name: &str, l: &StructOpsLink| match (target, l) {
        (Target::Name(n), _) => n == name,
        (Target::Id(id), StructOpsLink::Map(m)) => m.id() == *id,
        (Target::Id(id), StructOpsLink::Link(h)) => h.id() == *id || h.info().map_id == *id,
    };
    let pos = regs
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.links.iter().position(|(n, l)| hit(n, l)).map(|j| (i, j)));
    if let Some((i, j)) = pos {
        let (name, link) = regs[i].links.remove(j);
        link.detach(rt).map_err(err(Step::Unregister, name))?;
        if regs[i].links.is_empty() {
            regs.remove(i);
        }
        return Ok(Response::Done);
    }
    drop(regs);
    // Not registered through the socket: a `.struct_ops` map of the host's own is
    // unregistered by deleting its element, as `bpftool struct_ops unregister` does.
    let Target::Id(id) = target else {
        return Err(ControlError::new(
            Errno::ENOENT,
            Step::Unregister,
            format!("{target:?}"),
        ));
    };
    let m = rt
        .map_get_fd_by_id(*id, 0)
        .map_err(err(Step::Lookup, format!("map {id}")))?;
    if m.struct_ops().is_none() {
        return Err(ControlError::new(
            Errno::EINVAL,
            Step::Unregister,
            format!("map {id} is not a struct_ops map"),
        ));
    }
    rt.map_delete_elem(&m, Some(&0u32.to_ne_bytes()))
        .map_err(err(Step::Unregister, format!("map {id}")))?;
    Ok(Response::Done)
}

fn link_update(
    ctl: &Controller,
    link_id: u32,
    bytes: &[u8],
    path: &str,
    map: Option<&str>,
) -> Reply {
    let rt = &*ctl.rt;
    let link = rt
        .link_get_fd_by_id(link_id)
        .map_err(err(Step::Lookup, format!("link {link_id}")))?;
    let obj = load(rt, bytes, path)?;
    let name = match map {
        Some(m) => {
            let names = struct_ops_maps(&obj);
            if !names.iter().any(|n| n == m) {
                return Err(ControlError::new(
                    Errno::ENOENT,
                    Step::LinkUpdate,
                    format!(
                        "{path} has no struct_ops map '{m}' (it has: {})",
                        names.join(", ")
                    ),
                ));
            }
            m.to_string()
        }
        None => {
            let names = struct_ops_maps(&obj);
            match names.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(ControlError::new(
                        Errno::ENOENT,
                        Step::LinkUpdate,
                        format!("{path}: no struct_ops map"),
                    ));
                }
                _ => {
                    return Err(ControlError::new(
                        Errno::EINVAL,
                        Step::LinkUpdate,
                        format!("{path}: several struct_ops maps, name one"),
                    ));
                }
            }
        }
    };
    let sl = StructOpsLink::Link(link);
    sl.update_map(rt, &obj, &name)
        .map_err(|e| ControlError::new(e.errno(), Step::LinkUpdate, e.to_string()))?;
    let mut regs = lock(&ctl.regs);
    // The link now runs the new object's map: it owns the link from here on, and the
    // old object is released once nothing of it is registered.
    for reg in regs.iter_mut() {
        reg.links
            .retain(|(_, l)| !matches!(l, StructOpsLink::Link(h) if h.id() == link_id));
    }
    regs.retain(|r| !r.links.is_empty());
    let out = vec![registered(&name, &sl)];
    regs.push(Registration {
        obj,
        links: vec![(name, sl)],
    });
    Ok(Response::Registered(out))
}
