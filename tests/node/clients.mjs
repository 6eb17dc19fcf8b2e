// The Node clients of tests/test_frameworks_node.py, as their users write them.
//
//   node clients.mjs <client> [<check>...]
//
// runs the checks of one client (all of them by default, side by side: one process
// pays node's start-up once) against the gateway at SEAWALL_BASE_URL (its /v1 URL),
// and prints one JSON object on stdout, a report per check: what the client returned
// and what it sent (`sent`: the path and JSON body of every request, in order), for
// the test to assert on; a check that threw reports {"error", "status", "sent"}.
//
// Clients: `openai` (the official SDK), `ai-responses` (the Vercel AI SDK's default
// `openai(model)` provider, on the Responses API) and `ai-chat` (`openai.chat(model)`,
// on Chat Completions). Nothing here reaches the network: every client is given the
// gateway's URL, a recording fetch and a key no provider accepts.

const BASE_URL = process.env.SEAWALL_BASE_URL;
const MODEL = process.env.SEAWALL_MODEL ?? 'demo';
const API_KEY = process.env.SEAWALL_API_KEY ?? 'sk-seawall-test-not-a-key';
// Tool-using runs stop after this many model calls: a call, its answer, and slack.
const MAX_STEPS = 4;

/** A fetch that remembers each request's path and JSON body before sending it. */
function recording() {
  const sent = [];
  const send = async (input, init) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    const body = typeof init?.body === 'string' ? JSON.parse(init.body) : null;
    sent.push({ path: url.pathname, body });
    return fetch(input, init);
  };
  return { sent, fetch: send };
}

/** The tool every loop runs: answers from the city and remembers each call. */
function weatherStation() {
  const cities = [];
  const answers = [];
  return {
    cities,
    answers,
    report(city) {
      const answer = `21C and sunny in ${city}`;
      cities.push(city);
      answers.push(answer);
      return answer;
    },
  };
}

async function forecastSchema() {
  const { z } = await import('zod');
  return z.object({
    city: z.string().min(1).describe('The city the forecast is for'),
    celsius: z.number().int().min(-60).max(60),
    conditions: z.enum(['sunny', 'cloudy', 'rain']),
  });
}

// -- the official openai SDK -------------------------------------------------------

async function openaiClient(record) {
  const { default: OpenAI } = await import('openai');
  return new OpenAI({ baseURL: BASE_URL, apiKey: API_KEY, maxRetries: 0, fetch: record.fetch });
}

const WEATHER_PARAMETERS = {
  type: 'object',
  properties: { city: { type: 'string', minLength: 1 } },
  required: ['city'],
  additionalProperties: false,
};

const openaiChecks = {
  async chat(record) {
    const client = await openaiClient(record);
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hello there' }],
    });
    const response = await client.responses.create({ model: MODEL, input: 'Hello there' });
    return {
      chat_text: completion.choices[0].message.content,
      chat_usage: completion.usage,
      responses_text: response.output_text,
      responses_status: response.status,
    };
  },

  async stream(record) {
    const client = await openaiClient(record);
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Stream it' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chatDeltas = [];
    let usage = null;
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta?.content;
      if (piece) chatDeltas.push(piece);
      if (chunk.usage) usage = chunk.usage;
    }
    const events = [];
    const responses = client.responses.stream({ model: MODEL, input: 'Stream it' });
    for await (const event of responses) events.push(event);
    const final = await responses.finalResponse();
    return {
      chat_deltas: chatDeltas,
      chat_usage: usage,
      responses_event_types: events.map((event) => event.type),
      responses_deltas: events
        .filter((event) => event.type === 'response.output_text.delta')
        .map((event) => event.delta),
      responses_text: final.output_text,
    };
  },

  // The SDK's own loop: runTools calls the model, runs each call, sends the results,
  // until the model answers in text.
  async tool_loop(record) {
    const client = await openaiClient(record);
    const station = weatherStation();
    const runner = client.chat.completions.runTools({
      model: MODEL,
      messages: [{ role: 'user', content: 'Weather in Oslo?' }],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Current weather for a city.',
            parameters: WEATHER_PARAMETERS,
            parse: JSON.parse,
            function: ({ city }) => station.report(city),
          },
        },
      ],
      max_chat_completions: MAX_STEPS,
    });
    const text = await runner.finalContent();
    return { text, cities: station.cities, answers: station.answers };
  },

  async structured(record) {
    const { zodResponseFormat, zodTextFormat } = await import('openai/helpers/zod');
    const client = await openaiClient(record);
    const Forecast = await forecastSchema();
    const completion = await client.chat.completions.parse({
      model: MODEL,
      messages: [{ role: 'user', content: 'Weather in Oslo?' }],
      response_format: zodResponseFormat(Forecast, 'forecast'),
    });
    const response = await client.responses.parse({
      model: MODEL,
      input: 'Weather in Oslo?',
      text: { format: zodTextFormat(Forecast, 'forecast') },
    });
    return { chat_parsed: completion.choices[0].message.parsed, responses_parsed: response.output_parsed };
  },

  // A conversation's second user turn: chat sends the history back, Responses chains
  // to the stored first turn by its id.
  async second_turn(record) {
    const client = await openaiClient(record);
    const history = [{ role: 'user', content: 'My name is Ada Lovelace.' }];
    const first = await client.chat.completions.create({ model: MODEL, messages: history });
    history.push(first.choices[0].message, { role: 'user', content: 'What is my name?' });
    const second = await client.chat.completions.create({ model: MODEL, messages: history });
    const opening = await client.responses.create({
      model: MODEL,
      input: 'My name is Ada Lovelace.',
    });
    const chained = await client.responses.create({
      model: MODEL,
      input: 'What is my name?',
      previous_response_id: opening.id,
    });
    return {
      chat_text: second.choices[0].message.content,
      chat_prompt_tokens: [first.usage.prompt_tokens, second.usage.prompt_tokens],
      responses_text: chained.output_text,
      responses_previous: chained.previous_response_id,
      responses_opening: opening.id,
    };
  },

  // A custom (free-text) tool on Chat Completions, called and answered.
  async custom_tool(record) {
    const client = await openaiClient(record);
    const tools = [
      { type: 'custom', custom: { name: 'shell', description: 'Runs a shell command.' } },
    ];
    const messages = [{ role: 'user', content: 'List the files' }];
    const first = await client.chat.completions.create({ model: MODEL, messages, tools });
    const message = first.choices[0].message;
    const [call] = message.tool_calls;
    messages.push(message, { role: 'tool', tool_call_id: call.id, content: 'README.md' });
    const second = await client.chat.completions.create({ model: MODEL, messages, tools });
    return { call, finish_reason: first.choices[0].finish_reason, text: second.choices[0].message.content };
  },
};

// -- the Vercel AI SDK -------------------------------------------------------------

async function aiModel(record, api) {
  const { createOpenAI } = await import('@ai-sdk/openai');
  const openai = createOpenAI({ baseURL: BASE_URL, apiKey: API_KEY, fetch: record.fetch });
  // `openai(model)` is the Responses API; `openai.chat(model)` is Chat Completions.
  return api === 'responses' ? openai(MODEL) : openai.chat(MODEL);
}

/** The AI SDK's weather tool, run by the SDK when the model calls it. */
async function aiWeatherTools(station) {
  const { tool } = await import('ai');
  const { z } = await import('zod');
  return {
    get_weather: tool({
      description: 'Current weather for a city.',
      inputSchema: z.object({ city: z.string().min(1) }),
      execute: async ({ city }) => station.report(city),
    }),
  };
}

function aiChecks(api) {
  return {
    async chat(record) {
      const { generateText } = await import('ai');
      const result = await generateText({
        model: await aiModel(record, api),
        prompt: 'Hello there',
        maxRetries: 0,
      });
      return { text: result.text, usage: result.usage, finish_reason: result.finishReason };
    },

    async stream(record) {
      const { streamText } = await import('ai');
      const result = streamText({
        model: await aiModel(record, api),
        prompt: 'Stream it',
        maxRetries: 0,
      });
      const deltas = [];
      for await (const piece of result.textStream) deltas.push(piece);
      return { deltas, text: await result.text, usage: await result.usage };
    },

    // The SDK's loop: each step runs the model's tool calls and sends the results,
    // until a step ends in text (or MAX_STEPS is reached).
    async tool_loop(record) {
      const { generateText, stepCountIs } = await import('ai');
      const station = weatherStation();
      const result = await generateText({
        model: await aiModel(record, api),
        prompt: 'Weather in Oslo?',
        tools: await aiWeatherTools(station),
        stopWhen: stepCountIs(MAX_STEPS),
        maxRetries: 0,
      });
      return {
        text: result.text,
        steps: result.steps.map((step) => step.finishReason),
        cities: station.cities,
        answers: station.answers,
      };
    },

    async structured(record) {
      const { generateText, Output } = await import('ai');
      const result = await generateText({
        model: await aiModel(record, api),
        prompt: 'Weather in Oslo?',
        output: Output.object({ schema: await forecastSchema() }),
        maxRetries: 0,
      });
      return { output: result.output };
    },

    // A chat app's second user turn: the first turn (a tool loop) goes back in the
    // history as its response messages, on the Responses API partly as
    // `item_reference`s to the items the gateway stored; the second turn loops again.
    async second_turn(record) {
      const { generateText, stepCountIs } = await import('ai');
      const station = weatherStation();
      const turn = {
        model: await aiModel(record, api),
        tools: await aiWeatherTools(station),
        stopWhen: stepCountIs(MAX_STEPS),
        maxRetries: 0,
      };
      const messages = [{ role: 'user', content: 'Weather in Oslo?' }];
      const first = await generateText({ ...turn, messages });
      messages.push(...first.response.messages, { role: 'user', content: 'And in Bergen?' });
      const second = await generateText({ ...turn, messages });
      return {
        texts: [first.text, second.text],
        steps: [first.steps.length, second.steps.length],
        answers: station.answers,
      };
    },
  };
}

const CLIENTS = {
  openai: openaiChecks,
  'ai-responses': aiChecks('responses'),
  'ai-chat': aiChecks('chat'),
};

/** One check's report: what it saw, or why it failed; what it sent either way. */
async function report(run) {
  const record = recording();
  try {
    return { ...(await run(record)), sent: record.sent };
  } catch (error) {
    const status = error?.status ?? error?.statusCode ?? error?.lastError?.statusCode ?? null;
    return { error: String(error?.stack ?? error), status, sent: record.sent };
  }
}

async function main() {
  const [client, ...asked] = process.argv.slice(2);
  const checks = CLIENTS[client];
  const names = asked.length ? asked : Object.keys(checks ?? {});
  if (!BASE_URL || checks === undefined || names.some((name) => !(name in checks))) {
    const known = Object.entries(CLIENTS).map(([name, all]) => `${name}: ${Object.keys(all)}`);
    console.error('usage: SEAWALL_BASE_URL=http://host:port/v1 node clients.mjs <client> [<check>...]');
    console.error(known.join('\n'));
    process.exit(2);
  }
  const reports = await Promise.all(names.map((name) => report(checks[name])));
  process.stdout.write(JSON.stringify(Object.fromEntries(names.map((name, i) => [name, reports[i]]))));
}

await main();
