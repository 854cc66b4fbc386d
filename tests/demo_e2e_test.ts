/**
 * The demo console in a real browser: headless Chromium (Debian's
 * /usr/bin/chromium) driven by playwright-core. An agent and a client, each in
 * their own browser context (own cookie jar), log in through the page
 * (`POST /dev/login`, HttpOnly cookie), connect with cookie auth, see each
 * other online, join chat group 456, see each other's typing indicator, chat
 * both ways; the client is refused another customer's group and is warned by
 * the rate limit. The test saves a screenshot to tests/out/demo.png.
 *
 * Skipped, with the reason printed, where /usr/bin/chromium is absent.
 */

import assert from "node:assert/strict";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { loadConfig } from "../src/config.ts";
import { type App, createApp } from "../src/server.ts";
import { eventually } from "./support/clients.ts";

/** The few DOM members the functions run inside the page use (this module has no DOM lib). */
interface PageDocument {
  cookie: string;
  getElementById(id: string): { textContent: string | null } | null;
  querySelectorAll(selector: string): Iterable<{ textContent: string | null }>;
}
/** The page's `document`: only referenced inside functions that run in the browser. */
declare const document: PageDocument;

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const SCREENSHOT = new URL("./out/demo.png", import.meta.url);
const WAIT_MS = 15_000;

function chromiumPresent(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

const hasChromium = chromiumPresent();
if (!hasChromium) {
  console.log(`demo_e2e_test: skipped: ${CHROMIUM} is absent (apt-get install chromium)`);
}

interface Served {
  app: App;
  url: string;
  close: () => Promise<void>;
}

/**
 * Runs the service on a free loopback port whose own origin is the one
 * allowed for cookie handshakes (the port is known before the app is built:
 * the listener starts first and hands over to the app's handler).
 */
async function serve(env: Record<string, string>): Promise<Served> {
  let handler: (req: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response> = () =>
    new Response("starting", { status: 503 });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req, info) => handler(req, info),
  );
  const url = `http://127.0.0.1:${server.addr.port}`;
  let app: App;
  try {
    app = await createApp(loadConfig({
      APP_ENV: "development",
      HOST: "127.0.0.1",
      PORT: "0",
      KV_PATH: ":memory:",
      SEED_FILE: "demo/fixture.json",
      SOCKET_CORS_ORIGINS: url,
      ...env,
    }));
  } catch (error) {
    await server.shutdown();
    throw error;
  }
  handler = app.handler;
  return {
    app,
    url,
    async close() {
      await app.close();
      await server.shutdown();
    },
  };
}

interface Person {
  context: BrowserContext;
  page: Page;
  /** Uncaught page errors and console errors (CSP violations show up here). */
  problems: string[];
}

async function openConsole(browser: Browser, url: string): Promise<Person> {
  const context = await browser.newContext({ viewport: { width: 1320, height: 820 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  const response = await page.goto(url);
  assert.equal(response?.status(), 200);
  return { context, page, problems };
}

/** Logs in as the fixture person `who` (`agent:123`, `client:789`) through the page. */
async function logIn(person: Person, who: string, expectedName: string): Promise<void> {
  const { page } = person;
  await page.selectOption("#user-select", who);
  await page.click("#login");
  await page.waitForSelector("#status.pill.on");
  assert.match(await page.textContent("#status") ?? "", new RegExp(expectedName));
}

async function joinGroup(person: Person, groupId: number): Promise<void> {
  const { page } = person;
  await page.click(`#group-buttons button[data-group="${groupId}"]`);
  await page.waitForSelector("#composer-input:not([disabled])");
  await page.waitForFunction(
    (id) => document.getElementById("room-info")?.textContent?.startsWith(`#${id} `),
    groupId,
  );
}

/** Types like a user (one key at a time, so `input` events fire). */
async function typeText(person: Person, text: string): Promise<void> {
  await person.page.click("#composer-input");
  await person.page.keyboard.type(text);
}

async function waitText(page: Page, selector: string, text: string): Promise<void> {
  await page.waitForFunction(
    ([sel, expected]) =>
      [...document.querySelectorAll(sel)].some((node) => node.textContent?.includes(expected)),
    [selector, text] as const,
  );
}

/** The chat groups the page offers as buttons. */
async function groupButtons(page: Page): Promise<string[]> {
  return await page.$$eval(
    "#group-buttons button",
    (nodes) => nodes.map((n) => (n as unknown as { dataset: { group: string } }).dataset.group),
  );
}

/** The entries of the online list, as shown (name, role, "you"). */
async function onlineTexts(page: Page): Promise<string[]> {
  return await page.$$eval("#online-list li", (nodes) => nodes.map((n) => n.textContent ?? ""));
}

async function messageTexts(page: Page): Promise<string[]> {
  return await page.$$eval("#messages li.msg .text", (nodes) => nodes.map((n) => n.textContent));
}

Deno.test({
  name: "demo console in headless Chromium: presence, typing and chat between agent and client",
  ignore: !hasChromium,
  async fn(t) {
    const served = await serve({ RATE_LIMIT_MESSAGES: "5" });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const agent = await openConsole(browser, served.url);
      const client = await openConsole(browser, served.url);

      await t.step("the page and the socket.io bundle come from this server", async () => {
        assert.equal(await agent.page.title(), "Servana realtime · demo console");
        assert.equal(
          await agent.page.evaluate(() => typeof (globalThis as { io?: unknown }).io),
          "function",
        );
        const bundle = await agent.page.evaluate(async () => {
          const res = await fetch("/socket.io.min.js");
          return (await res.text()).slice(0, 40);
        });
        assert.match(bundle, /Socket\.IO v4\.8\.4/);
      });

      await t.step("each logs in with the HttpOnly cookie and connects", async () => {
        await logIn(agent, "agent:123", "John Doe");
        await logIn(client, "client:789", "Carla Client");
        for (const person of [agent, client]) {
          const cookies = await person.context.cookies();
          const cookie = cookies.find((c) => c.name === "access_token");
          assert.ok(cookie, "access_token cookie set");
          assert.equal(cookie.httpOnly, true);
          // the page's script cannot read it
          assert.equal(await person.page.evaluate(() => document.cookie), "");
        }
      });

      await t.step("the group buttons offer the groups each person may join", async () => {
        // 456 and 458 (resolved) are the customer's and department 1's; 457 and 459 are
        // department 2's, which agent 123 is not in
        assert.deepEqual(await groupButtons(client.page), ["456", "458"]);
        assert.deepEqual(await groupButtons(agent.page), ["456", "458"]);
      });

      await t.step("each sees the other online", async () => {
        await agent.page.waitForSelector('#online-list li[data-person="client:789"]');
        await client.page.waitForSelector('#online-list li[data-person="agent:123"]');
        assert.match(
          await agent.page.textContent('#online-list li[data-person="client:789"]') ?? "",
          /Carla Client\s*client/,
        );
        assert.match(
          await agent.page.textContent('#online-list li[data-person="agent:123"]') ?? "",
          /John Doe.*you/,
        );
      });

      await t.step("both join chat group 456", async () => {
        await joinGroup(agent, 456);
        await joinGroup(client, 456);
        await waitText(agent.page, "#messages li.system", "Carla Client joined");
      });

      await t.step("the agent types: the client sees it, then the message", async () => {
        await typeText(agent, "Hello Carla, how can I help?");
        await waitText(client.page, "#typing", "John Doe is typing");
        await agent.page.press("#composer-input", "Enter");
        await waitText(client.page, "#messages li.msg .text", "Hello Carla, how can I help?");
        await client.page.waitForFunction(() =>
          document.getElementById("typing")?.textContent === ""
        );
        await waitText(agent.page, "#messages li.msg.mine .text", "Hello Carla, how can I help?");
        assert.equal(await agent.page.inputValue("#composer-input"), "", "composer cleared");
      });

      await t.step("the client types and answers: the agent sees both", async () => {
        await typeText(client, "My invoice is wrong: 3 < 5 & more");
        await waitText(agent.page, "#typing", "Carla Client is typing");
        await client.page.press("#composer-input", "Enter");
        await waitText(agent.page, "#messages li.msg .text", "My invoice is wrong");
        const texts = await messageTexts(agent.page);
        assert.deepEqual(texts, [
          "Hello Carla, how can I help?",
          "My invoice is wrong: 3 < 5 & more",
        ]);
        assert.deepEqual(await messageTexts(client.page), texts);
        const sender = await agent.page.textContent("#messages li.msg:last-child .meta .name");
        assert.equal(sender, "Carla Client");
      });

      await t.step("markup in a message is shown as text, never run", async () => {
        await typeText(client, '<img src=x onerror="window.pwned=1"><b>bold</b> move');
        await client.page.press("#composer-input", "Enter");
        await waitText(agent.page, "#messages li.msg .text", "bold move");
        assert.equal(await agent.page.$("#messages img"), null);
        assert.equal(await agent.page.$("#messages b"), null);
        assert.equal(await agent.page.evaluate(() => "pwned" in globalThis), false);
      });

      await t.step("another customer's group is refused with ACCESS_DENIED", async () => {
        await client.page.fill("#group-input", "457");
        await client.page.click("#join");
        await waitText(client.page, "#alert", "ACCESS_DENIED");
        await waitText(client.page, "#log li.err", "ACCESS_DENIED");
        assert.match(await client.page.textContent("#room-info") ?? "", /^#456 /, "still in 456");
      });

      await t.step("sending too fast shows the rate-limit warning with the wait", async () => {
        // RATE_LIMIT_MESSAGES=5: the client has sent 2; the 6th within the window is refused
        for (let i = 1; i <= 4; i++) {
          await client.page.fill("#composer-input", `quick ${i}`);
          await client.page.press("#composer-input", "Enter");
        }
        await waitText(client.page, "#alert", "Rate limit");
        assert.match(
          await client.page.textContent("#alert") ?? "",
          /Rate limit: Too many messages, please slow down — retry in \d+ s/,
        );
        await waitText(client.page, "#log li.err", "retryAfterMs");
        await waitText(agent.page, "#messages li.msg .text", "quick 3");
        assert.deepEqual(
          (await messageTexts(agent.page)).filter((text) => text?.startsWith("quick")),
          ["quick 1", "quick 2", "quick 3"],
        );
      });

      await t.step("an admin sees every user online and the room stats", async () => {
        const admin = await openConsole(browser, served.url);
        const pia = await openConsole(browser, served.url);
        try {
          await logIn(admin, "agent:1", "Ada Admin");
          assert.equal(await admin.page.isVisible("#stats-card"), true);
          assert.deepEqual(await groupButtons(admin.page), ["456", "457", "458", "459"]);
          for (const person of ["agent:1", "agent:123", "client:789"]) {
            await admin.page.waitForSelector(`#online-list li[data-person="${person}"]`);
          }
          // the admin (department 2 too) connecting drained the queue: 459 is active now
          await eventually(
            async () => (await served.app.services.store.getChatGroup(459))?.status === "active",
            "459 assigned from the queue",
          );
          await admin.page.click("#get-stats");
          // demo/fixture.json: 4 chat groups, 456, 457 and now 459 active; 3 people online
          await waitText(admin.page, "#stats", "rooms4active3online3at");

          // customer 1 (Pia) and the admin agent 1 are two people with the same number
          await logIn(pia, "client:1", "Pia");
          assert.deepEqual(await groupButtons(pia.page), ["459"]);
          await admin.page.waitForFunction(() =>
            [...document.querySelectorAll("#online-list li")].some((n) =>
              n.textContent?.startsWith("Pia")
            )
          );
          const seen = await onlineTexts(admin.page);
          assert.deepEqual(seen.filter((text) => /^(Ada Admin|Pia)/.test(text)), [
            "Ada Adminadminyou",
            "Piaclient",
          ]);
          // a customer sees the online agents only: not the admin, not other customers
          await pia.page.waitForSelector('#online-list li[data-person="agent:123"]');
          assert.deepEqual(await onlineTexts(pia.page), ["John Doeagent"]);
          assert.deepEqual(admin.problems, []);
          assert.deepEqual(pia.problems, []);
        } finally {
          await admin.context.close();
          await pia.context.close();
        }
        // the agent's and client's consoles are not admin consoles
        assert.equal(await agent.page.isVisible("#stats-card"), false);
        assert.equal(await client.page.isVisible("#stats-card"), false);
      });

      await t.step("screenshot of the agent's console while the client types", async () => {
        await client.page.fill("#composer-input", "");
        await typeText(client, "One more question");
        await waitText(agent.page, "#typing", "Carla Client is typing");
        await Deno.mkdir(new URL("./out/", import.meta.url), { recursive: true });
        const png = await agent.page.screenshot({ fullPage: true });
        await Deno.writeFile(SCREENSHOT, png);
        assert.ok(png.byteLength > 10_000, "a real screenshot");
      });

      await t.step("no script errors and no CSP violations in either page", () => {
        assert.deepEqual(agent.problems, []);
        assert.deepEqual(client.problems, []);
      });

      await agent.context.close();
      await client.context.close();
    } finally {
      await browser.close();
      await served.close();
    }
  },
});
