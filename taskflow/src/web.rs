//! axum integration: the layer that gives each request its [`Tasks`] and starts them once the
//! response is out, and the [`Tasks`] extractor.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http_body::{Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

use crate::manager::TaskManager;
use crate::tasks::{Rejection, RequestBatch, Tasks};

impl TaskManager {
    /// The tower layer that makes [`Tasks`] extractable in every handler it wraps.
    ///
    /// For each request it creates a `Tasks` whose `add_task` stores the task as `pending` at
    /// once and returns its id, but holds back its start until the response is out: once the
    /// handler has returned, the store has made the request's tasks durable (committed, for
    /// a store that writes in the background), and the server has taken the whole response
    /// body (for an ordinary body, as it is written to the socket). Tasks with `eager` start at
    /// enqueue instead.
    ///
    /// The tasks never vanish: if the handler panics, or the client goes away and the request
    /// is dropped, they start at that moment; they were stored before `add_task` returned. If
    /// the store could not take a task, the response is replaced by a `503` JSON error, so no
    /// client holds an id that does not exist.
    ///
    /// ```rust,standalone_crate
    /// use axum::{Json, Router, routing::post};
    /// use taskflow::{TaskManager, Tasks};
    ///
    /// #[taskflow::task(retries = 2)]
    /// async fn send_email(address: String) {
    ///     let _ = address;
    /// }
    ///
    /// async fn signup(tasks: Tasks) -> Json<serde_json::Value> {
    ///     let id = tasks.add_task(send_email, "a@b.c".to_string());
    ///     Json(serde_json::json!({ "task_id": id }))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> taskflow::Result<()> {
    /// let manager = TaskManager::builder().build().await?;
    /// let app: Router = Router::new().route("/signup", post(signup)).layer(manager.layer());
    /// # let _ = app;
    /// # Ok(())
    /// # }
    /// ```
    pub fn layer(&self) -> TaskLayer {
        TaskLayer { manager: self.clone() }
    }

    /// `router.layer(manager.layer())`.
    pub fn install<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router.layer(self.layer())
    }
}

/// The layer returned by [`TaskManager::layer`].
#[derive(Clone, Debug)]
pub struct TaskLayer {
    manager: TaskManager,
}

impl<S> Layer<S> for TaskLayer {
    type Service = TaskService<S>;

    fn layer(&self, inner: S) -> TaskService<S> {
        TaskService { inner, manager: self.manager.clone() }
    }
}

/// The service of [`TaskLayer`].
#[derive(Clone, Debug)]
pub struct TaskService<S> {
    inner: S,
    manager: TaskManager,
}

impl<S> Service<Request> for TaskService<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone is the one that is ready; keep it for this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let batch = Arc::new(RequestBatch::new(self.manager.enqueuer()));
        let guard = ReleaseOnDrop(Arc::clone(&batch));
        request.extensions_mut().insert(Tasks::for_request(Arc::clone(&batch)));
        Box::pin(async move {
            let response = inner.call(request).await.into_response();
            let response = match stored(&batch).await {
                Ok(()) => response,
                Err(refusal) => refusal,
            };
            Ok(response.map(|body| Body::new(ReleasingBody { body, _guard: guard })))
        })
    }
}

/// Waits until the request's tasks are durable; the response to send when they are not:
/// `413` for a task over the limits, `429` with `Retry-After` for a full queue, `503`
/// otherwise, each with a JSON body.
async fn stored(batch: &RequestBatch) -> Result<(), Response> {
    let (errors, rejection) = batch.errors();
    if !errors.is_empty() {
        let error = format!("could not enqueue background task: {}", errors.join("; "));
        return Err(match rejection {
            Some(Rejection::TooLarge) => {
                (StatusCode::PAYLOAD_TOO_LARGE, Json(serde_json::json!({ "error": error })))
                    .into_response()
            }
            Some(Rejection::QueueFull { queue, limit, retry_after }) => {
                let body = serde_json::json!({
                    "error": error,
                    "queue": queue,
                    "max_pending": limit,
                    "retry_after": retry_after,
                });
                let retry = [(axum::http::header::RETRY_AFTER, retry_after.to_string())];
                (StatusCode::TOO_MANY_REQUESTS, retry, Json(body)).into_response()
            }
            None => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "error": error })))
                .into_response(),
        });
    }
    if !batch.enqueued_any() {
        return Ok(());
    }
    batch.durable().await.map_err(|err| {
        tracing::error!(error = %err, "taskflow: could not make the request's tasks durable");
        let error = format!("could not enqueue background task: {err}");
        (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "error": error })))
            .into_response()
    })
}

/// Starts the request's held-back tasks when dropped: with the response body once the server
/// is done with it, or with the request future if it panics or is dropped.
struct ReleaseOnDrop(Arc<RequestBatch>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A response body that keeps the release guard until the server drops it.
struct ReleasingBody {
    body: Body,
    _guard: ReleaseOnDrop,
}

impl http_body::Body for ReleasingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The rejection when a handler asks for [`Tasks`] on a router without the manager's layer.
#[derive(Debug, Clone, Copy)]
pub struct MissingTaskLayer;

impl IntoResponse for MissingTaskLayer {
    fn into_response(self) -> Response {
        tracing::error!(
            "taskflow: a handler extracts `Tasks` but the router has no `manager.layer()`"
        );
        let body = serde_json::json!({
            "error": "server misconfigured: this route uses background tasks but no TaskManager layer is installed"
        });
        (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Tasks {
    type Rejection = MissingTaskLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, MissingTaskLayer> {
        parts.extensions.get::<Tasks>().cloned().ok_or(MissingTaskLayer)
    }
}
