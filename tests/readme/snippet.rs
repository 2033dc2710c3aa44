use coapio::server::{get, Site};
use coapio::{Endpoint, Response};

fn main() -> Result<(), coapio::Error> {
    let site = Site::new().resource("/hello", get(|_req| async { Response::content("Hello, world!") }));
    let (server, driver) = Endpoint::server("[::1]:0", site)?;
    // A server's driver must run: spawn it on any executor (smol::spawn(driver).detach(),
    // tokio::spawn(driver), ...) or give it a thread of its own.
    std::thread::spawn(move || async_io::block_on(driver));

    // A client needs no driver: while none runs, its requests drive it themselves.
    let (client, _driver) = Endpoint::client()?;
    let uri = format!("coap://[::1]:{}/hello", server.local_addr()?.port());
    let response = async_io::block_on(client.get(&uri))?;
    println!("{} {}", response.code, String::from_utf8_lossy(&response.payload));
    server.shutdown();
    Ok(())
}
