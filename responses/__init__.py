"""The OpenAI Responses API: translation to and from Chat Completions, and the response store."""
