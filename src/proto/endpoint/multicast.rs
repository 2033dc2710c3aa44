//! Requests to multicast groups (RFC 7252 §8): sent Non-confirmable, answered by any number
//! of servers until the group timeout.

use std::net::SocketAddr;
use std::time::Instant;

use crate::message::MessageRef;
use crate::net::RecvMeta;
use crate::proto::Error;

use super::*;

impl Endpoint {
    /// A request to a multicast group: sent Non-confirmable (RFC 7252 §8.1), it collects the
    /// responses of every server until `Config::multicast_timeout` (or its own timeout).
    pub(super) fn group_request(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        mut request: Request,
    ) -> Result<RequestId, Error> {
        request.confirmable = false;
        let limit = request.timeout.unwrap_or(self.config.multicast_timeout);
        request.timeout = Some(limit);
        let id = self.start_wire(now, remote, request)?;
        if let Some(req) = self.requests.get(&id) {
            self.group_requests.insert(req.token, id);
        }
        Ok(id)
    }

    /// A response to a request sent to a multicast group, from one of the servers.
    pub(super) fn group_response(
        &mut self,
        now: Instant,
        meta: &RecvMeta,
        m: &MessageRef<'_>,
        id: RequestId,
    ) {
        self.accept_response(now, meta, m);
        self.events.push_back(Event::GroupResponse {
            id,
            from: meta.remote,
            response: Response::of_message(meta.remote, m),
        });
    }
}
