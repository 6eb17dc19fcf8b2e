"""The OpenAI Responses API: translation to and from Chat Completions, and the response store.

For upstreams that speak only Chat Completions, a `POST /v1/responses` body is
translated to a chat body (`request.to_chat`), the chat completion translated back
(`response.from_chat`, or `stream.StreamTranslator` chunk by chunk), and the result
kept for `previous_response_id`, `GET`, `DELETE` and `/input_items` (`store`,
`listing`). What cannot be translated is refused with an `errors.ResponsesError`
naming the parameter; the gateway renders it. Never imports `gateway`.
"""
