/**
 * Prometheus metrics in the text exposition format (`GET /metrics`):
 * counters, gauges and histograms with labels, kept in plain maps.
 *
 * @module
 */

type Labels = Record<string, string | number>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.map((k) => `${k}="${escapeLabel(String(labels[k]))}"`).join(",");
}

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
}

function withLabels(name: string, key: string, extra = ""): string {
  const all = [key, extra].filter(Boolean).join(",");
  return all ? `${name}{${all}}` : name;
}

/** A monotonically increasing counter. */
export class Counter {
  readonly #values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}

  /** Adds `by` (default 1) to the series with these labels. */
  inc(labels: Labels = {}, by = 1): void {
    const key = labelKey(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }

  /** Current value of a series (tests). */
  get(labels: Labels = {}): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }

  /** Exposition lines. */
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [key, value] of this.#values) lines.push(`${withLabels(this.name, key)} ${value}`);
    return lines.join("\n");
  }
}

/** A gauge whose value is read when metrics are rendered. */
export class Gauge {
  readonly #values = new Map<string, number>();
  #collect?: () => Array<[Labels, number]>;
  constructor(readonly name: string, readonly help: string) {}

  /** Sets the series with these labels. */
  set(labels: Labels, value: number): void {
    this.#values.set(labelKey(labels), value);
  }

  /** Computes the series at render time instead of storing them. */
  collect(fn: () => Array<[Labels, number]>): void {
    this.#collect = fn;
  }

  /** Exposition lines. */
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    const values = new Map(this.#values);
    if (this.#collect) {
      for (const [labels, v] of this.#collect()) {
        values.set(labelKey(labels), v);
      }
    }
    for (const [key, value] of values) lines.push(`${withLabels(this.name, key)} ${value}`);
    return lines.join("\n");
  }
}

interface HistogramSeries {
  buckets: number[];
  sum: number;
  count: number;
}

/** A histogram of observations (seconds) with fixed buckets. */
export class Histogram {
  readonly #series = new Map<string, HistogramSeries>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: readonly number[] = [
      0.0005,
      0.001,
      0.0025,
      0.005,
      0.01,
      0.025,
      0.05,
      0.1,
      0.25,
      0.5,
      1,
      2.5,
    ],
  ) {}

  /** Records one observation. */
  observe(labels: Labels, value: number): void {
    const key = labelKey(labels);
    let series = this.#series.get(key);
    if (!series) {
      series = { buckets: new Array(this.bounds.length).fill(0), sum: 0, count: 0 };
      this.#series.set(key, series);
    }
    for (let i = 0; i < this.bounds.length; i++) if (value <= this.bounds[i]) series.buckets[i]++;
    series.sum += value;
    series.count++;
  }

  /** Number of observations of a series (tests). */
  count(labels: Labels = {}): number {
    return this.#series.get(labelKey(labels))?.count ?? 0;
  }

  /** Exposition lines. */
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [key, s] of this.#series) {
      for (let i = 0; i < this.bounds.length; i++) {
        lines.push(
          `${withLabels(this.name + "_bucket", key, `le="${this.bounds[i]}"`)} ${s.buckets[i]}`,
        );
      }
      lines.push(`${withLabels(this.name + "_bucket", key, 'le="+Inf"')} ${s.count}`);
      lines.push(`${withLabels(this.name + "_sum", key)} ${s.sum}`);
      lines.push(`${withLabels(this.name + "_count", key)} ${s.count}`);
    }
    return lines.join("\n");
  }
}

/** The service's metrics. */
export class Metrics {
  readonly sockets = new Gauge("servana_sockets", "Connected sockets by transport and role");
  readonly rooms = new Gauge("servana_rooms", "Socket.IO rooms on this process");
  readonly messagesIn = new Counter("servana_events_in_total", "Client events received, by event");
  readonly messagesOut = new Counter("servana_messages_out_total", "Chat messages broadcast");
  readonly eventLatency = new Histogram(
    "servana_event_duration_seconds",
    "Event handling time, by event",
  );
  readonly authFailures = new Counter(
    "servana_auth_failures_total",
    "Refused handshakes by reason",
  );
  readonly rateLimitHits = new Counter(
    "servana_rate_limit_hits_total",
    "Rate-limit refusals by event",
  );
  readonly errors = new Counter("servana_errors_total", "Error replies by code");
  readonly storeLatency = new Histogram(
    "servana_store_duration_seconds",
    "Store (KV or database) call time, by backend and operation",
  );

  /** The exposition text. */
  render(): string {
    return [
      this.sockets,
      this.rooms,
      this.messagesIn,
      this.messagesOut,
      this.eventLatency,
      this.authFailures,
      this.rateLimitHits,
      this.errors,
      this.storeLatency,
    ].map((m) => m.render()).join("\n") + "\n";
  }
}
