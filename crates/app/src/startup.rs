//! Building the HTTP servers from settings and the wired components, shared by `serve` and the
//! tests: the API listener, and `/metrics` on a listener of its own when `metrics.bind_addr` is
//! set.

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use futures_util::future::{join_all, try_join_all};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};

use crate::http;
use crate::settings::Settings;
use crate::wiring::Components;

/// Bound, not yet running, HTTP servers.
pub struct Application {
    servers: Vec<Server>,
    address: SocketAddr,
    metrics_address: Option<SocketAddr>,
}

impl Application {
    /// Binds `settings.server.bind_addr` (port 0 picks a free port) and builds the server on
    /// `components`: handlers get the application state, the readiness probe and the store (for
    /// `/metrics`), each as `web::Data`. Pools and clients are built once, outside the
    /// per-worker factory, and shared by every worker's clones. With `metrics.bind_addr`,
    /// `/metrics` moves to a server of its own there.
    ///
    /// # Errors
    /// If an address cannot be bound.
    pub fn build(settings: &Settings, components: &Components) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.server.bind_addr)?;
        let address = listener.local_addr()?;
        // Installed before the first request is counted, with every series at zero.
        crate::telemetry::metrics_handle();
        crate::series::register(http::document().document(), &policy_names(settings));
        let separate_metrics = settings.metrics.bind_addr.is_some();
        let mut servers = vec![api_server(
            settings,
            components,
            listener,
            !separate_metrics,
        )?];
        let mut metrics_address = None;
        if let Some(bind_addr) = settings.metrics.bind_addr {
            let listener = TcpListener::bind(bind_addr)?;
            metrics_address = Some(listener.local_addr()?);
            servers.push(metrics_server(settings, components, listener)?);
        }
        Ok(Self {
            servers,
            address,
            metrics_address,
        })
    }
}

/// The names of every rate-limit policy: the routes' and the login flow's failure budgets.
fn policy_names(settings: &Settings) -> Vec<String> {
    let routes = http::RoutePolicies::new(&settings.rate_limit);
    let budgets = settings.rate_limit.login_failures.budgets();
    let policies = routes
        .all()
        .into_iter()
        .chain([&budgets.per_client, &budgets.per_account]);
    policies.map(|policy| policy.name.clone()).collect()
}

/// The API (and, unless it has a listener of its own, `/metrics`) on `listener`.
fn api_server(
    settings: &Settings,
    components: &Components,
    listener: TcpListener,
    with_metrics: bool,
) -> std::io::Result<Server> {
    let limits = http::RoutePolicies::new(&settings.rate_limit);
    let state = web::Data::new(components.state.clone());
    let readiness = web::Data::from(components.infra.readiness().clone());
    let store = web::Data::new(components.infra.store().clone());
    let outages = web::Data::new(http::outage::Outages::new(http::outage::QUIET_PERIOD));
    let cors = settings.cors.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(readiness.clone())
            .app_data(store.clone())
            .app_data(outages.clone())
            .wrap(http::cors::cors(&cors))
            .wrap(from_fn(http::middleware::request_id))
            // Last wrapped, so first to run: nothing reads an oversized header.
            .wrap(from_fn(http::middleware::bounded_headers))
            .configure(|config| http::routes(config, &limits, with_metrics))
            .default_service(web::to(http::unknown_route))
    })
    .shutdown_timeout(settings.server.shutdown_timeout_secs)
    .listen(listener)?
    .run();
    Ok(server)
}

/// `/metrics` alone on `listener`, with one worker: scrapes are rare and must not wait behind
/// API traffic.
fn metrics_server(
    settings: &Settings,
    components: &Components,
    listener: TcpListener,
) -> std::io::Result<Server> {
    let store = web::Data::new(components.infra.store().clone());
    let readiness = web::Data::from(components.infra.readiness().clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(store.clone())
            .app_data(readiness.clone())
            .wrap(from_fn(http::middleware::bounded_headers))
            .configure(http::metrics_route)
            .default_service(web::to(http::unknown_route))
    })
    .workers(1)
    .shutdown_timeout(settings.server.shutdown_timeout_secs)
    .listen(listener)?
    .run();
    Ok(server)
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("address", &self.address)
            .field("metrics_address", &self.metrics_address)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Where the API listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where `/metrics` listens, when it has a listener of its own.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    /// Serves until the servers are stopped (SIGTERM, SIGINT or the handle), draining in-flight
    /// requests within the shutdown timeout.
    ///
    /// # Errors
    /// If a server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        try_join_all(self.servers).await.map(drop)
    }

    /// A handle to stop every server.
    pub fn handle(&self) -> ApplicationHandle {
        ApplicationHandle(self.servers.iter().map(Server::handle).collect())
    }
}

/// Stops the servers of an [`Application`].
#[derive(Debug, Clone)]
pub struct ApplicationHandle(Vec<ServerHandle>);

impl ApplicationHandle {
    /// Tells every server to stop (at once, before the returned future is polled), gracefully
    /// or not; the future completes when they have.
    pub fn stop(&self, graceful: bool) -> impl Future<Output = ()> + use<> {
        let stopping: Vec<_> = self.0.iter().map(|server| server.stop(graceful)).collect();
        async move {
            join_all(stopping).await;
        }
    }
}
